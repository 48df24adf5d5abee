"""GET /tasks/{id}, with and without ?wait=."""

from __future__ import annotations

import asyncio
import time

import pytest
from quart.typing import TestClientProtocol as Client

from ..sample_tasks import gate
from .conftest import MakeClient
from .helpers import TASK_FIELDS, get_task, problem, submit

ANSWER_DEADLINE = 10.0  # seconds: a deadline well short of the ?wait= it tells apart


async def test_get_returns_the_task(client: Client) -> None:
    created = await submit(client, "add", 1, 2, delay=30)

    response = await client.get(f"/tasks/{created['id']}")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    task = await response.get_json()
    assert task.keys() >= TASK_FIELDS
    assert task == created  # a scheduled task does not change until its time


async def test_wait_returns_as_soon_as_the_task_is_terminal(client: Client) -> None:
    created = await submit(client, "wait_for_release", "w")
    await gate("w").wait_started()
    waiting = asyncio.create_task(get_task(client, created["id"], wait=30))
    done, _ = await asyncio.wait({waiting}, timeout=0.1)
    assert not done, "?wait= answered while the task was still running"

    gate("w").open()
    task = await asyncio.wait_for(waiting, ANSWER_DEADLINE)  # not the ?wait= of 30 s

    assert task["status"] == "succeeded"
    assert task["result"] == "w"


async def test_wait_times_out_with_the_task_as_it_is(client: Client) -> None:
    created = await submit(client, "wait_for_release", "slow")
    await gate("slow").wait_started()
    started = time.monotonic()

    # the task never ends by itself; a ?wait=0.2 taken for a long wait misses the deadline
    task = await asyncio.wait_for(get_task(client, created["id"], wait=0.2), ANSWER_DEADLINE)

    assert time.monotonic() - started >= 0.15  # it waited for its ?wait=
    assert task["status"] == "running"


async def test_wait_zero_answers_at_once(client: Client) -> None:
    created = await submit(client, "wait_for_release", "zero")
    await gate("zero").wait_started()
    # the task never ends by itself: an answer at all is one at once
    task = await asyncio.wait_for(get_task(client, created["id"], wait=0), ANSWER_DEADLINE)

    assert task["status"] == "running"


async def test_wait_on_a_terminal_task_answers_at_once(client: Client) -> None:
    created = await submit(client, "add", 2, 2)
    await get_task(client, created["id"], wait=10)
    task = await asyncio.wait_for(get_task(client, created["id"], wait=60),
                                  ANSWER_DEADLINE)  # not after the 60 s

    assert task["result"] == 4


async def test_wait_of_several_clients_on_one_task(client: Client) -> None:
    created = await submit(client, "wait_for_release", "many")
    await gate("many").wait_started()
    waiters = [asyncio.create_task(get_task(client, created["id"], wait=30)) for _ in range(5)]
    done, _ = await asyncio.wait(waiters, timeout=0.05)
    assert not done

    gate("many").open()
    tasks = await asyncio.wait_for(asyncio.gather(*waiters), 5)

    assert {t["status"] for t in tasks} == {"succeeded"}


async def test_fractional_wait_is_accepted(client: Client) -> None:
    created = await submit(client, "add", 1, 1)

    response = await client.get(f"/tasks/{created['id']}?wait=2.5")

    assert response.status_code == 200
    assert (await response.get_json())["status"] == "succeeded"


@pytest.mark.parametrize("wait", ["-1", "-0.001", "60.001", "61", "1e9", "nan", "inf", "-inf",
                                  "abc", "", "1s", "0x10"])
async def test_bad_wait_is_400(client: Client, wait: str) -> None:
    created = await submit(client, "add", 1, 1)

    response = await client.get(f"/tasks/{created['id']}?wait={wait}")

    body = await problem(response, 400)
    assert "wait" in body["detail"] + str(body.get("errors"))


async def test_wait_of_60_is_allowed(client: Client) -> None:
    created = await submit(client, "add", 1, 1)

    assert (await client.get(f"/tasks/{created['id']}?wait=60")).status_code == 200


async def test_wait_on_unknown_task_is_404(client: Client) -> None:
    await problem(await client.get("/tasks/" + "b" * 24 + "?wait=1"), 404)


async def test_wait_wakes_when_the_task_is_cancelled(client: Client) -> None:
    created = await submit(client, "wait_for_release", "gone")
    await gate("gone").wait_started()
    waiting = asyncio.create_task(client.get(f"/tasks/{created['id']}?wait=30"))
    done, _ = await asyncio.wait({waiting}, timeout=0.05)
    assert not done

    await client.post(f"/tasks/{created['id']}/cancel")
    response = await asyncio.wait_for(waiting, 5)

    assert response.status_code == 200
    assert (await response.get_json())["status"] == "cancelled"


async def test_wait_above_the_configured_maximum_is_400(make_client: MakeClient) -> None:
    client = await make_client(max_wait=5)
    created = await submit(client, "add", 1, 1)

    await problem(await client.get(f"/tasks/{created['id']}?wait=6"), 400)
    assert (await client.get(f"/tasks/{created['id']}?wait=5")).status_code == 200

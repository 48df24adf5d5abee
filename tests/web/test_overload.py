"""Overload, in process: ten times the queue bound submitted as fast as the client can.

The excess is turned away with 429 and ``Retry-After``; every task that was accepted
(202) runs to its end; the queue never holds more than its bound; the records kept stay
within ``max_records`` however many tasks went through.
"""

from __future__ import annotations

import asyncio
from typing import Any

from quart.typing import TestClientProtocol as Client

from .conftest import MakeClient
from .helpers import problem

MAX_QUEUE = 200
FLOOD = 10 * MAX_QUEUE
CONCURRENCY = 20
MAX_RECORDS = MAX_QUEUE // 2  # fewer than are accepted: the bound is exercised
TASK_SECONDS = 0.1  # a little time each: 200 tasks/s at most, far below the flood's rate


async def test_ten_times_the_queue_bound_gets_429s_and_every_accepted_task_finishes(
    make_client: MakeClient,
) -> None:
    client = await make_client(max_queue=MAX_QUEUE, max_concurrency=CONCURRENCY,
                               max_records=MAX_RECORDS)
    flooding = True
    depths: list[int] = []

    async def submit_then_wait() -> tuple[int, Any]:
        response = await client.post("/tasks", json={"name": "sleep", "args": [TASK_SECONDS]})
        if response.status_code != 202:
            return response.status_code, response
        task_id = (await response.get_json())["id"]
        # Waiting from the moment of acceptance: the answer is the task's end even if its
        # record is evicted (max_records) soon after.
        done = await client.get(f"/tasks/{task_id}?wait=30")
        assert done.status_code == 200, await done.get_data(as_text=True)
        return 202, await done.get_json()

    async def watch_the_queue() -> None:
        while flooding:  # ends with the flood
            stats = await (await client.get("/stats")).get_json()
            depths.append(stats["queue_depth"])
            await asyncio.sleep(0)  # let the flood go on between looks

    watcher = asyncio.create_task(watch_the_queue())
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(submit_then_wait() for _ in range(FLOOD))), 60)
    finally:
        flooding = False
        await watcher

    accepted = [body for status, body in results if status == 202]
    refused = [response for status, response in results if status != 202]
    assert {status for status, _ in results} == {202, 429}
    assert len(accepted) >= MAX_QUEUE > MAX_RECORDS
    assert len(accepted) + len(refused) == FLOOD
    for response in refused:
        await problem(response, 429)
        assert int(response.headers["Retry-After"]) >= 1
    assert all(task["status"] == "succeeded" for task in accepted)
    assert all(task["result"] == TASK_SECONDS for task in accepted)
    assert len({task["id"] for task in accepted}) == len(accepted)
    assert depths
    assert max(depths) <= MAX_QUEUE

    await assert_records_bounded(client)


async def assert_records_bounded(client: Client) -> None:
    await client.app.extensions["offload"].service.evict()  # the sweeper's round, now
    stats = await (await client.get("/stats")).get_json()
    assert stats["queue_depth"] == 0
    assert stats["running"] == 0
    assert sum(stats["counts"].values()) <= MAX_RECORDS
    listed = await (await client.get("/tasks?limit=1000")).get_json()
    assert len(listed["items"]) <= MAX_RECORDS
    # and the service still takes work
    response = await client.post("/tasks", json={"name": "add", "args": [2, 3]})
    assert response.status_code == 202

"""POST /tasks: 202 with Location, Retry-After and the task object; the task then runs."""

from __future__ import annotations

import asyncio
from datetime import datetime

from quart.typing import TestClientProtocol as Client

from ..sample_tasks import gate
from .conftest import MakeClient
from .helpers import TASK_FIELDS, finished, get_task, problem, submit


async def test_submit_answers_202_with_location_retry_after_and_the_task(
    client: Client,
) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [2, 3]})

    assert response.status_code == 202
    assert response.mimetype == "application/json"
    task = await response.get_json()
    assert task.keys() >= TASK_FIELDS
    assert response.headers["Location"] == f"/tasks/{task['id']}"
    assert int(response.headers["Retry-After"]) >= 0
    assert task["name"] == "add"
    assert task["status"] in {"queued", "running", "succeeded"}
    assert task["args"] == [2, 3]
    assert task["kwargs"] == {}
    assert task["priority"] == 0
    assert task["max_attempts"] == 1
    assert task["cancel_requested"] is False
    assert task["result"] is None
    assert task["error"] is None


async def test_location_leads_to_the_task_and_its_result(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "kwargs": {"a": 20, "b": 22}})

    done = await client.get(response.headers["Location"] + "?wait=10")

    task = await done.get_json()
    assert done.status_code == 200
    assert task["id"] == (await response.get_json())["id"]
    assert task["status"] == "succeeded"
    assert task["result"] == 42
    assert task["kwargs"] == {"a": 20, "b": 22}
    assert task["attempts"] == 1


async def test_task_ids_are_unique_url_safe_and_long(client: Client) -> None:
    ids = [(await submit(client, "add", i, i))["id"] for i in range(20)]

    assert len(set(ids)) == 20
    for task_id in ids:
        assert len(task_id) >= 22  # 22 base64url characters carry 132 bits
        assert all(c.isalnum() or c in "-_" for c in task_id)


async def test_timestamps_are_rfc3339_utc(client: Client) -> None:
    task = await finished(client, (await submit(client, "add", 1, 1))["id"])

    for key in ("created_at", "started_at", "finished_at"):
        assert task[key].endswith("Z")
        datetime.fromisoformat(task[key].replace("Z", "+00:00"))
    assert task["created_at"] <= task["started_at"] <= task["finished_at"]
    assert task["scheduled_at"] is None


async def test_arguments_are_coerced_to_the_annotations(client: Client) -> None:
    task = await finished(client, (await submit(client, "sleep", 0))["id"])

    assert task["status"] == "succeeded"
    assert task["result"] == 0.0


async def test_keyword_only_parameters_are_accepted_by_name(client: Client) -> None:
    created = await submit(client, "keyword_only", kwargs={"size": 3, "label": "ab"})

    assert (await finished(client, created["id"]))["result"] == "ababab"


async def test_big_integer_result_is_exact(client: Client) -> None:
    task = await finished(client, (await submit(client, "big_int", 40))["id"])

    assert task["status"] == "succeeded"
    assert task["result"] == int("9" * 40)


async def test_failed_task_reports_type_and_message_without_traceback(
    client: Client,
) -> None:
    task = await finished(client, (await submit(client, "fail", "boom"))["id"])

    assert task["status"] == "failed"
    assert task["error"] == {"type": "RuntimeError", "message": "boom"}
    assert task["result"] is None


async def test_traceback_is_shown_only_when_configured(make_client: MakeClient) -> None:
    client = await make_client(expose_tracebacks=True)

    task = await finished(client, (await submit(client, "fail", "boom"))["id"])

    assert task["error"]["type"] == "RuntimeError"
    assert "Traceback" in task["error"]["traceback"]
    assert "boom" in task["error"]["traceback"]


async def test_delay_makes_the_task_scheduled(client: Client) -> None:
    task = await submit(client, "add", 1, 2, delay=30)

    assert task["status"] == "scheduled"
    assert task["scheduled_at"] is not None
    assert task["scheduled_at"] > task["created_at"]
    assert (await get_task(client, task["id"]))["status"] == "scheduled"


async def test_short_delay_runs_later(client: Client) -> None:
    task = await submit(client, "add", 1, 2, delay=0.05)

    done = await finished(client, task["id"])

    assert done["status"] == "succeeded"
    assert done["started_at"] >= task["scheduled_at"]


async def test_priority_is_kept_on_the_task(client: Client) -> None:
    task = await submit(client, "add", 1, 2, priority=-7)

    assert task["priority"] == -7
    assert (await get_task(client, task["id"]))["priority"] == -7


async def test_higher_priority_starts_first(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1)
    blocker = await submit(client, "wait_for_release", "blocker")
    await gate("blocker").wait_started()
    low = await submit(client, "add", 0, 1, priority=1)
    high = await submit(client, "add", 0, 2, priority=5)

    gate("blocker").open()
    low_done = await finished(client, low["id"])
    high_done = await finished(client, high["id"])

    assert (await finished(client, blocker["id"]))["status"] == "succeeded"
    assert high_done["started_at"] <= low_done["started_at"]


async def test_submission_timeout_fails_the_task_with_timeout_error(
    client: Client,
) -> None:
    task = await submit(client, "sleep", 30, timeout=0.05)

    assert task["timeout"] == 0.05
    done = await finished(client, task["id"])

    assert done["status"] == "failed"
    assert done["error"]["type"] == "TimeoutError"


async def test_submission_timeout_wins_over_the_task_types(client: Client) -> None:
    # slow_with_type_timeout has timeout=0.2; the submission's 5 s lets a 0.3 s run finish.
    task = await submit(client, "slow_with_type_timeout", 0.3, timeout=5)

    assert (await finished(client, task["id"]))["status"] == "succeeded"


async def test_retries_show_in_attempts(client: Client) -> None:
    task = await submit(client, "flaky", 3)

    assert task["max_attempts"] == 4
    done = await finished(client, task["id"])

    assert done["status"] == "succeeded"
    assert done["attempts"] == 3
    assert done["result"] == 3


async def test_queue_full_is_429_with_retry_after(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1, max_queue=2)
    await submit(client, "wait_for_release", "q1")
    await gate("q1").wait_started()
    await submit(client, "add", 1, 1)
    await submit(client, "add", 2, 2)

    response = await client.post("/tasks", json={"name": "add", "args": [3, 3]})

    await problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1


async def test_queue_accepts_again_once_room_is_made(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1, max_queue=1)
    await submit(client, "wait_for_release", "room")
    await gate("room").wait_started()
    queued = await submit(client, "add", 1, 1)
    assert (await client.post("/tasks", json={"name": "add", "args": [1, 2]})).status_code == 429

    gate("room").open()
    await finished(client, queued["id"])

    assert (await client.post("/tasks", json={"name": "add", "args": [1, 2]})).status_code == 202


async def test_delayed_tasks_count_toward_the_queue_bound(make_client: MakeClient) -> None:
    client = await make_client(max_queue=2)
    await submit(client, "add", 1, 1, delay=30)
    await submit(client, "add", 1, 1, delay=30)

    response = await client.post("/tasks", json={"name": "add", "args": [1, 1]})

    await problem(response, 429)


async def test_submit_while_draining_is_503_and_readyz_too(make_client: MakeClient) -> None:
    client = await make_client(shutdown_grace=5)
    running = await submit(client, "wait_for_release", "drain")
    await gate("drain").wait_started()
    stopping = asyncio.create_task(client.app.extensions["offload"].service.stop())
    await asyncio.sleep(0)  # let stop() begin draining (not a wait for completion)

    refused = await client.post("/tasks", json={"name": "add", "args": [1, 1]})
    ready = await client.get("/readyz")

    body = await problem(refused, 503)
    assert "Retry-After" in refused.headers
    assert "shutting down" in body["detail"]
    await problem(ready, 503)
    assert (await client.get("/healthz")).status_code == 200
    gate("drain").open()
    await stopping
    assert (await get_task(client, running["id"]))["status"] == "succeeded"


async def test_submit_before_start_is_503() -> None:
    from .conftest import web_app

    app = web_app()
    client = app.test_client()  # app not started: before_serving has not run

    await problem(await client.post("/tasks", json={"name": "add", "args": [1, 1]}), 503)
    await problem(await client.get("/readyz"), 503)


async def test_zero_delay_is_queued_at_once(client: Client) -> None:
    task = await submit(client, "add", 1, 2, delay=0)

    assert task["status"] in {"queued", "running", "succeeded"}
    assert (await finished(client, task["id"]))["result"] == 3


async def test_priority_bounds_are_accepted(client: Client) -> None:
    high = await submit(client, "add", 1, 2, priority=2**31 - 1, delay=30)
    low = await submit(client, "add", 1, 2, priority=-(2**31), delay=30)

    assert high["priority"] == 2**31 - 1
    assert low["priority"] == -(2**31)

"""Task types, stats, health, metrics, the OpenAPI document, /docs, the page, /process."""

from __future__ import annotations

from typing import Any

from quart.typing import TestClientProtocol as Client

from ..sample_tasks import gate
from .conftest import MakeClient
from .helpers import finished, get_task, submit

DEMO_TASKS = {"long_task", "sleep", "add", "fail", "count", "blocking_sleep", "cpu"}


async def task_types(client: Client) -> dict[str, dict[str, Any]]:
    response = await client.get("/task-types")
    assert response.status_code == 200
    return {t["name"]: t for t in (await response.get_json())["items"]}


async def stats(client: Client) -> dict[str, Any]:
    response = await client.get("/stats")
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


# -- /task-types ------------------------------------------------------------------------------

async def test_task_types_list_the_demo_tasks_with_every_field(client: Client) -> None:
    types = await task_types(client)

    assert types.keys() >= DEMO_TASKS
    for entry in types.values():
        assert entry.keys() >= {"name", "description", "parameters", "executor", "timeout",
                                "retries", "idempotent"}
        assert entry["parameters"]["type"] == "object"
    assert {t["idempotent"] for n, t in types.items() if n in DEMO_TASKS} == {False}


async def test_task_type_parameters_are_a_json_schema(client: Client) -> None:
    types = await task_types(client)

    add = types["add"]["parameters"]
    assert add["properties"]["a"]["type"] == "integer"
    assert add["properties"]["b"]["type"] == "integer"
    assert sorted(add["required"]) == ["a", "b"]
    count = types["count"]["parameters"]
    assert count["required"] == ["n"]
    assert count["properties"]["delay"]["type"] == "number"
    assert count["properties"]["delay"]["default"] == 0.1
    assert "required" not in types["long_task"]["parameters"]


async def test_task_types_show_executor_timeout_retries_and_description(
    client: Client,
) -> None:
    types = await task_types(client)

    assert types["add"]["executor"] == "async"
    assert types["blocking_sleep"]["executor"] == "thread"
    assert types["cpu"]["executor"] == "process"
    assert types["slow_with_type_timeout"]["timeout"] == 0.2
    assert types["flaky"]["retries"] == 3
    assert types["add"]["description"] == "Add two integers at once."


# -- /stats -----------------------------------------------------------------------------------

async def test_stats_have_counts_queue_running_capacity_uptime(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=3, max_queue=50)

    body = await stats(client)

    assert body["counts"] == {s: 0 for s in ("queued", "scheduled", "waiting", "running",
                                             "succeeded", "failed", "cancelled")}
    assert body["queue_depth"] == 0
    assert body["running"] == 0
    assert body["capacity"] == 3
    assert body["max_queue"] == 50
    assert body["uptime_seconds"] >= 0
    assert body["accepting"] is True


async def test_stats_count_tasks_by_status(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1)
    await finished(client, (await submit(client, "add", 1, 1))["id"])
    await finished(client, (await submit(client, "fail", "x"))["id"])
    await submit(client, "add", 1, 1, delay=30)
    await submit(client, "wait_for_release", "stats")
    await gate("stats").wait_started()
    await submit(client, "add", 2, 2)

    body = await stats(client)

    assert body["counts"] == {"queued": 1, "scheduled": 1, "waiting": 0, "running": 1,
                              "succeeded": 1, "failed": 1, "cancelled": 0}
    assert body["queue_depth"] == 2  # queued + scheduled
    assert body["running"] == 1


# -- health -----------------------------------------------------------------------------------

async def test_healthz_is_200(client: Client) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_readyz_is_200_when_started(client: Client) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert (await response.get_json())["status"] == "ready"


# -- /metrics ---------------------------------------------------------------------------------

async def test_metrics_are_prometheus_text(client: Client) -> None:
    await finished(client, (await submit(client, "add", 1, 1))["id"])
    await finished(client, (await submit(client, "fail", "x"))["id"])

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "version=0.0.4" in response.headers["Content-Type"]
    text = await response.get_data(as_text=True)
    assert 'offload_tasks_submitted_total{task="add"} 1.0' in text
    assert 'offload_tasks_finished_total{status="failed",task="fail"} 1.0' in text
    assert "# TYPE offload_task_duration_seconds histogram" in text
    assert "offload_running 0.0" in text
    assert "offload_capacity " in text


async def test_metrics_count_rejected_submissions(make_client: MakeClient) -> None:
    client = await make_client(max_queue=1)
    await submit(client, "add", 1, 1, delay=30)
    assert (await client.post("/tasks", json={"name": "add", "args": [1, 1]})).status_code == 429

    text = await (await client.get("/metrics")).get_data(as_text=True)

    assert 'offload_submissions_rejected_total{reason="queue_full"} 1.0' in text


# -- OpenAPI, /docs and the page --------------------------------------------------------------

async def test_openapi_document_describes_the_api(client: Client) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    spec = await response.get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    expected = {
        "/tasks": {"get", "post"}, "/tasks/batch": {"post"},
        "/tasks/{task_id}": {"get", "delete"}, "/tasks/{task_id}/cancel": {"post"},
        "/tasks/{task_id}/events": {"get"}, "/task-types": {"get"}, "/stats": {"get"},
        "/healthz": {"get"}, "/readyz": {"get"}, "/metrics": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= paths[path].keys(), path
    submit_op = paths["/tasks"]["post"]
    assert "requestBody" in submit_op
    assert {"202", "400", "413", "415", "422", "429", "503"} <= submit_op["responses"].keys()
    assert "wait" in {p["name"] for p in paths["/tasks/{task_id}"]["get"]["parameters"]}


async def test_docs_page_is_html(client: Client) -> None:
    response = await client.get("/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "openapi.json" in await response.get_data(as_text=True)


async def test_dashboard_page_is_html(client: Client) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "<html" in (await response.get_data(as_text=True)).lower()


# -- the seed's /process ----------------------------------------------------------------------

async def test_process_starts_long_task_and_answers_202_at_once(client: Client) -> None:
    response = await client.get("/process")

    assert response.status_code == 202
    body = await response.get_json()
    assert set(body) == {"task_id", "status"}
    assert body["status"] in {"queued", "running"}
    assert response.headers["Location"] == f"/tasks/{body['task_id']}"
    task = await get_task(client, body["task_id"])
    assert task["name"] == "long_task"
    assert task["status"] in {"queued", "running"}
    await client.post(f"/tasks/{body['task_id']}/cancel")  # not ten seconds of teardown
    assert (await finished(client, body["task_id"]))["status"] == "cancelled"


async def test_refused_submissions_are_counted_by_reason(make_client: MakeClient) -> None:
    client = await make_client(max_queue=1)
    assert (await client.post("/tasks", json={"name": "nope"})).status_code == 422
    assert (await client.post("/tasks", data="x", headers={"Content-Type": "text/plain"})
            ).status_code == 415
    delayed = await client.post("/tasks", json={"name": "add", "args": [1, 2], "delay": 60})
    assert delayed.status_code == 202  # scheduled: the queue holds its one task
    assert (await client.post("/tasks", json={"name": "add", "args": [1, 2]})
            ).status_code == 429
    text = (await (await client.get("/metrics")).get_data()).decode()
    for reason in ("http_422", "http_415", "queue_full"):
        assert f'offload_submissions_rejected_total{{reason="{reason}"}} 1.0' in text, reason

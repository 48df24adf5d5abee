"""Bearer tokens: 401 without one; open endpoints stay open; tasks belong to their token."""

from __future__ import annotations

import pytest
from quart.typing import TestClientProtocol as Client

from .conftest import MakeClient
from .helpers import bearer, finished, ids_listed, problem, submit

TOKENS = ("t1", "t2")
SOME_ID = "f" * 24
PROTECTED = [
    ("POST", "/tasks"), ("POST", "/tasks/batch"), ("GET", "/tasks"),
    ("GET", f"/tasks/{SOME_ID}"), ("GET", f"/tasks/{SOME_ID}?wait=1"),
    ("GET", f"/tasks/{SOME_ID}/events"), ("POST", f"/tasks/{SOME_ID}/cancel"),
    ("DELETE", f"/tasks/{SOME_ID}"), ("GET", "/task-types"), ("GET", "/stats"),
    ("GET", "/metrics"), ("GET", "/process"),
]
OPEN = ["/healthz", "/readyz", "/openapi.json", "/docs", "/"]
WRONG = [
    {}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "}, {"Authorization": "Bearer t3"},
    {"Authorization": "Bearer t1x"}, {"Authorization": "Bearer t"},
    {"Authorization": "Basic dDE6"}, {"Authorization": "t1"}, {"Authorization": "Token t1"},
    {"Authorization": "Bearer t1,t2"}, {"Authorization": "Bearer \u00e9"},
]


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client(api_tokens=TOKENS, shutdown_grace=0.1)  # /process: a 10 s task


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_endpoint_without_token_is_401(client: Client, method: str,
                                                       path: str) -> None:
    response = await client.open(path, method=method, json={"name": "add", "args": [1, 2]})

    await problem(response, 401)
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize("headers", WRONG)
async def test_wrong_or_malformed_token_is_401(client: Client, headers: dict[str, str]) -> None:
    response = await client.get("/tasks", headers=headers)

    await problem(response, 401)
    assert "WWW-Authenticate" in response.headers


async def test_401_does_not_create_a_task(client: Client) -> None:
    await client.post("/tasks", json={"name": "add", "args": [1, 2]},
                      headers={"Authorization": "Bearer nope"})
    await client.get("/process")

    assert await ids_listed(client, headers=bearer("t1")) == []
    assert await ids_listed(client, headers=bearer("t2")) == []


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_endpoint_with_a_token_is_not_401(client: Client, method: str,
                                                          path: str) -> None:
    response = await client.open(path, method=method, headers=bearer("t2"),
                                 json={"name": "add", "args": [1, 2]})

    assert response.status_code != 401


async def test_scheme_is_case_insensitive(client: Client) -> None:
    response = await client.get("/tasks", headers={"Authorization": "bearer t1"})

    assert response.status_code == 200


@pytest.mark.parametrize("path", OPEN)
async def test_open_endpoints_need_no_token(client: Client, path: str) -> None:
    assert (await client.get(path)).status_code == 200


async def test_process_with_a_token_belongs_to_that_token(client: Client) -> None:
    response = await client.get("/process", headers=bearer("t1"))
    task_id = (await response.get_json())["task_id"]

    assert response.status_code == 202
    await problem(await client.get(f"/tasks/{task_id}", headers=bearer("t2")), 404)
    assert (await client.post(f"/tasks/{task_id}/cancel", headers=bearer("t1"))).status_code == 202


async def test_another_token_gets_404_for_every_action(client: Client) -> None:
    mine = await submit(client, "add", 1, 2, delay=30, headers=bearer("t1"))
    path = f"/tasks/{mine['id']}"

    await problem(await client.get(path, headers=bearer("t2")), 404)
    await problem(await client.get(path + "?wait=0.1", headers=bearer("t2")), 404)
    await problem(await client.get(path + "/events", headers=bearer("t2")), 404)
    await problem(await client.post(path + "/cancel", headers=bearer("t2")), 404)
    await problem(await client.delete(path, headers=bearer("t2")), 404)

    task = await (await client.get(path, headers=bearer("t1"))).get_json()
    assert task["status"] == "scheduled"  # the other token's cancel changed nothing


async def test_another_tokens_404_looks_like_a_missing_task(client: Client) -> None:
    mine = await submit(client, "add", 1, 2, delay=30, headers=bearer("t1"))

    theirs = await problem(await client.get(f"/tasks/{mine['id']}", headers=bearer("t2")), 404)
    missing = await problem(await client.get(f"/tasks/{SOME_ID}", headers=bearer("t2")), 404)

    assert theirs == missing


async def test_lists_show_only_the_tokens_own_tasks(client: Client) -> None:
    mine = await submit(client, "add", 1, 2, delay=30, headers=bearer("t1"))
    theirs = await submit(client, "add", 3, 4, delay=30, headers=bearer("t2"))

    assert await ids_listed(client, headers=bearer("t1")) == [mine["id"]]
    assert await ids_listed(client, headers=bearer("t2")) == [theirs["id"]]
    assert await ids_listed(client, "&name=add&status=scheduled",
                            headers=bearer("t2")) == [theirs["id"]]


async def test_stats_count_only_the_tokens_own_tasks(client: Client) -> None:
    await finished(client, (await submit(client, "add", 1, 2, headers=bearer("t1")))["id"],
                   headers=bearer("t1"))
    await submit(client, "add", 1, 2, delay=30, headers=bearer("t1"))

    response = await client.get("/stats", headers=bearer("t2"))
    own = await (await client.get("/stats", headers=bearer("t1"))).get_json()

    counts = (await response.get_json())["counts"]
    assert set(counts.values()) == {0}
    assert own["counts"]["succeeded"] == 1
    assert own["counts"]["scheduled"] == 1


async def test_batch_tasks_belong_to_the_token(client: Client) -> None:
    response = await client.post("/tasks/batch", headers=bearer("t1"),
                                 json={"tasks": [{"name": "add", "args": [1, 1], "delay": 30}]})
    task_id = (await response.get_json())["items"][0]["id"]

    await problem(await client.get(f"/tasks/{task_id}", headers=bearer("t2")), 404)
    assert await ids_listed(client, headers=bearer("t1")) == [task_id]


async def test_no_tokens_configured_means_no_auth(make_client: MakeClient) -> None:
    client = await make_client(api_tokens=())

    assert (await client.get("/tasks")).status_code == 200
    assert (await client.get("/stats", headers={"Authorization": "Bearer x"})).status_code == 200


async def test_stats_load_figures_are_the_whole_services_read_now(client: Client) -> None:
    """queue_depth is deployment-wide: with tokens on it is read for the call, not left at
    what an owner-less read last saw."""
    before = await (await client.get("/stats", headers=bearer("t2"))).get_json()
    await submit(client, "add", 1, 2, delay=30, headers=bearer("t1"))

    after = await (await client.get("/stats", headers=bearer("t2"))).get_json()

    assert after["queue_depth"] == before["queue_depth"] + 1
    assert after["counts"]["scheduled"] == 0  # t2's own counts

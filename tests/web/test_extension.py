"""The Offload extension embedded in a user's own Quart app, under a URL prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from quart import Quart, Response
from quart.typing import TestClientProtocol as Client

from service import Offload
from service.models import Submission

from ..conftest import settings
from .helpers import bearer, problem


def build_app(offload: Offload) -> Quart:
    app = Quart("embedding")

    @offload.task
    async def double(n: int) -> int:
        return 2 * n

    offload.init_app(app)

    @app.get("/mine")
    async def mine() -> tuple[dict[str, str], int]:
        record, _ = await offload.service.submit(Submission("double", [21]),
                                                 owner=offload.current_owner())
        return {"task_id": record.id}, 202

    return app


@pytest.fixture
async def embedded() -> AsyncIterator[Client]:
    offload = Offload(settings=settings(task_modules=(), api_tokens=("tok",), max_body=300),
                      url_prefix="/api/")
    app = build_app(offload)
    async with app.test_app() as started:
        yield started.test_client()


async def test_api_is_served_under_the_prefix_with_prefixed_location(embedded: Client) -> None:
    response = await embedded.post("/api/tasks", json={"name": "double", "args": [4]},
                                   headers=bearer("tok"))

    assert response.status_code == 202
    task_id = (await response.get_json())["id"]
    assert response.headers["Location"] == f"/api/tasks/{task_id}"
    done = await embedded.get(response.headers["Location"] + "?wait=10", headers=bearer("tok"))
    assert (await done.get_json())["result"] == 8


async def test_unprefixed_paths_are_not_the_api(embedded: Client) -> None:
    assert (await embedded.get("/tasks", headers=bearer("tok"))).status_code == 404
    assert (await embedded.get("/api/healthz")).status_code == 200


async def test_errors_under_the_prefix_are_problems(embedded: Client) -> None:
    await problem(await embedded.get("/api/tasks"), 401)
    await problem(await embedded.get("/api/tasks/" + "a" * 24, headers=bearer("tok")), 404)
    await problem(await embedded.post("/api/tasks", json={"name": "nope"},
                                      headers=bearer("tok")), 422)
    await problem(await embedded.post("/api/tasks", data=b"{", headers={
        **bearer("tok"), "Content-Type": "application/json"}), 400)


async def test_max_body_holds_without_the_apps_max_content_length(embedded: Client) -> None:
    body = {"name": "double", "args": [1], "kwargs": {}, "padding": "x" * 400}

    await problem(await embedded.post("/api/tasks", json=body, headers=bearer("tok")), 413)


async def test_own_route_uses_the_callers_token(embedded: Client) -> None:
    refused = await embedded.get("/mine")  # the app's own route: its own error format
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].lower().startswith("bearer")
    response = await embedded.get("/mine", headers=bearer("tok"))
    task_id = (await response.get_json())["task_id"]

    assert response.status_code == 202
    done = await embedded.get(f"/api/tasks/{task_id}?wait=10", headers=bearer("tok"))
    assert (await done.get_json())["result"] == 42


async def test_task_types_show_the_apps_own_tasks(embedded: Client) -> None:
    response = await embedded.get("/api/task-types", headers=bearer("tok"))

    assert [t["name"] for t in (await response.get_json())["items"]] == ["double"]


async def test_openapi_lists_the_prefixed_paths(embedded: Client) -> None:
    spec = await (await embedded.get("/api/openapi.json")).get_json()

    assert "/api/tasks" in spec["paths"]
    assert "/api/tasks/{task_id}/events" in spec["paths"]


async def test_apps_own_json_routes_still_work() -> None:
    app = Quart("other")
    Offload(app, settings=settings(task_modules=()))

    @app.post("/echo")
    async def echo() -> Response:
        from quart import jsonify, request

        return jsonify(await request.get_json())

    async with app.test_app() as started:
        client = started.test_client()
        response = await client.post("/echo", json={"a": [1, 2]})
        assert await response.get_json() == {"a": [1, 2]}

"""An app that embeds Offload, served again and again in one process, as a test run does:
the module-level pattern and the app factory, settings read at start, tasks declared on
the extension, teardown with a task still running, and the eager mode."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from service import Offload, Status, TaskFunction
from service.errors import ShuttingDown
from service.web.binding import TEST_GRACE

from .. import sample_tasks
from ..conftest import settings
from .helpers import problem

FAST = settings(task_modules=())


async def double(n: int) -> int:
    return 2 * n


async def flaky() -> None:
    raise ValueError("no")


async def run_double(client: Client, prefix: str = "/offload") -> int:
    """Submit ``double`` over HTTP and wait for its result."""
    response = await client.post(f"{prefix}/tasks", json={"name": "double", "args": [21]})
    assert response.status_code == 202, await response.get_data(as_text=True)
    location = response.headers["Location"]
    done = await (await client.get(f"{location}?wait=10")).get_json()
    result: int = done["result"]
    return result


async def test_the_module_level_pattern_serves_again_and_again() -> None:
    app = Quart("module_level")
    offload = Offload(app, settings=FAST)
    doubled = offload.task(double)
    services = []

    for _ in range(3):
        async with app.test_app() as started:
            assert await run_double(started.test_client()) == 42
            assert await (await doubled.submit(4)).result(10) == 8
            services.append(offload.service)

    assert len({id(s) for s in services}) == 3  # a fresh service each time
    with pytest.raises(ShuttingDown):  # the last one has stopped
        await doubled.submit(1)


async def test_an_app_factory_gets_the_extensions_tasks_every_time() -> None:
    offload = Offload(settings=FAST)
    doubled = offload.task(double)

    def create_app() -> Quart:
        app = Quart("factory")
        offload.init_app(app)
        return app

    for _ in range(2):
        app = create_app()
        async with app.test_app() as started:
            client = started.test_client()
            names = [t["name"] for t in (await (await client.get(
                "/offload/task-types")).get_json())["items"]]
            assert names == ["double"]
            assert await run_double(client) == 42
            assert await (await doubled.submit(5)).result(10) == 10


async def test_a_task_declared_later_belongs_to_every_app_already_initialised() -> None:
    offload = Offload(settings=FAST)
    first, second = Quart("first"), Quart("second")
    offload.init_app(first)
    offload.init_app(second)
    offload.task(double)

    for app in (first, second):
        async with app.test_app() as started:
            assert await run_double(started.test_client()) == 42
            assert "double" in offload.service.registry


async def test_tasks_registered_on_the_service_before_start_stay_for_every_start() -> None:
    app = Quart("registered")
    offload = Offload(app, settings=FAST)
    offload.service.register_module("service.demo")

    for _ in range(2):
        async with app.test_app() as started:
            client = started.test_client()
            response = await client.post("/offload/tasks", json={"name": "add", "args": [2, 3]})
            task_id = (await response.get_json())["id"]
            done = await (await client.get(f"/offload/tasks/{task_id}?wait=10")).get_json()
            assert done["result"] == 5


async def test_config_set_after_the_extension_is_read_at_start() -> None:
    app = Quart("configured")
    offload = Offload(app)
    offload.task(double)
    app.config["OFFLOAD_MAX_QUEUE"] = 7
    app.config["OFFLOAD_API_TOKENS"] = "secret"

    async with app.test_app() as started:
        client = started.test_client()
        await problem(await client.get("/offload/stats"), 401)
        stats = await (await client.get("/offload/stats", headers={
            "Authorization": "Bearer secret"})).get_json()
        assert stats["max_queue"] == 7

    app.config["OFFLOAD_MAX_QUEUE"] = 8
    app.config["OFFLOAD_API_TOKENS"] = ""
    async with app.test_app() as started:
        stats = await (await started.test_client().get("/offload/stats")).get_json()
        assert stats["max_queue"] == 8
        assert offload.service.settings.max_queue == 8


async def test_settings_given_to_the_extension_win_over_later_config() -> None:
    app = Quart("given")
    Offload(app, settings=settings(task_modules=(), max_queue=5))
    app.config["OFFLOAD_MAX_QUEUE"] = 9

    async with app.test_app() as started:
        stats = await (await started.test_client().get("/offload/stats")).get_json()

    assert stats["max_queue"] == 5


async def test_a_testing_app_stops_with_a_thread_task_still_running() -> None:
    app = Quart("testing")
    app.config["TESTING"] = True
    offload = Offload(app, settings=settings(task_modules=("tests.sample_tasks",),
                                             shutdown_grace=30.0))
    gate = sample_tasks.gate("stuck")
    try:
        async with app.test_app():
            handle = await sample_tasks.thread_ignores_cancel.submit("stuck")
            await gate.wait_started()
            stopping = time.monotonic()
        ended = time.monotonic()  # no TimeoutError from Quart's 6 s shutdown wait
        record = await offload.service.get(handle.id)
    finally:
        gate.open()

    assert ended - stopping < TEST_GRACE + 2  # not the 30 s grace
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "Interrupted"


async def test_eager_submissions_return_once_the_task_has_ended() -> None:
    app = Quart("eager")
    offload = Offload(app, settings=FAST, eager=True)
    doubled: TaskFunction = offload.task(double)
    offload.task(flaky)

    async with app.test_app() as started:
        client = started.test_client()
        handle = await doubled.submit_with([3], delay=3600)  # no delay in eager mode
        response = await client.post("/offload/tasks", json={"name": "double", "args": [4]})
        failed = await client.post("/offload/tasks", json={"name": "flaky"})
        batch = await client.post("/offload/tasks/batch", json={"tasks": [
            {"name": "double", "args": [i]} for i in range(3)]})

    assert handle.status is Status.SUCCEEDED
    assert handle.record is not None
    assert handle.record.result == 6
    assert response.status_code == 202
    assert (await response.get_json())["result"] == 8
    assert (await failed.get_json())["error"]["type"] == "ValueError"
    items: list[dict[str, Any]] = (await batch.get_json())["items"]
    assert [item["result"] for item in items] == [0, 2, 4]


async def test_the_service_is_the_one_of_the_app_in_context() -> None:
    offload = Offload(settings=FAST)
    first, second = Quart("first"), Quart("second")
    offload.init_app(first)
    offload.init_app(second)

    async with first.app_context():
        in_first = offload.service
    async with second.app_context():
        in_second = offload.service

    assert in_first is not in_second
    assert offload.service is in_second  # outside any app: the one initialised last
    with pytest.raises(RuntimeError, match="init_app"):
        _ = Offload().service


async def test_two_apps_served_at_once_each_run_their_own_service() -> None:
    offload = Offload(settings=FAST)
    offload.task(double)
    first, second = Quart("first"), Quart("second")
    offload.init_app(first)
    offload.init_app(second)

    async with first.test_app() as one, second.test_app() as two:
        results = await asyncio.gather(run_double(one.test_client()),
                                       run_double(two.test_client()))
        async with first.app_context():
            stats = await offload.service.stats()

    assert results == [42, 42]
    assert sum(stats["counts"].values()) == 1  # type: ignore[union-attr]


async def test_eager_may_be_switched_between_starts() -> None:
    app = Quart("switched")
    offload = Offload(app, settings=FAST)
    doubled = offload.task(double)

    statuses = []
    for eager in (True, False, True):
        offload.eager = eager
        async with app.test_app():
            statuses.append((await doubled.submit(1)).status)

    assert statuses == [Status.SUCCEEDED, Status.QUEUED, Status.SUCCEEDED]


async def test_the_standalone_service_keeps_the_root_paths(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).get_json()

    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/offload/tasks")).status_code == 404
    assert {"/tasks", "/stats", "/metrics", "/healthz", "/", "/process"} <= spec[
        "paths"].keys()

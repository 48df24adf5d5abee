"""GET /schedules and POST /schedules/{name}/pause|resume (service/web/schedules.py), on the
standalone app and on an embedding app, with schedules from settings and from code."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from quart import Quart
from quart.testing.app import LifespanError
from quart.typing import TestClientProtocol as Client

from service import Offload
from service.settings import Settings

from ..conftest import settings
from .conftest import MakeClient
from .helpers import PROBLEM_FIELDS, bearer

SCHEDULES = (
    {"name": "nightly", "task": "add", "cron": "0 3 * * *", "timezone": "Europe/Paris",
     "args": [1, 2]},
    {"name": "often", "task": "add", "every": 3600, "kwargs": {"a": 1, "b": 1},
     "missed": "latest", "overlap": True},
)


async def _json(client: Client, method: str, path: str, status: int,
                headers: dict[str, str] | None = None) -> Any:
    response = await client.open(path, method=method, headers=headers or {})
    body = await response.get_json()
    assert response.status_code == status, body
    return body


async def test_list_shows_each_schedule_with_its_state(make_client: MakeClient) -> None:
    client = await make_client(schedules=SCHEDULES)
    body = await _json(client, "GET", "/schedules", 200)
    nightly, often = body["items"]
    assert nightly == {
        "name": "nightly", "task": "add", "cron": "0 3 * * *", "timezone": "Europe/Paris",
        "args": [1, 2], "kwargs": {}, "missed": "skip", "overlap": False,
        "next_run_at": nightly["next_run_at"], "last_run_at": None, "last_task_id": None,
        "last_status": None, "paused": False}
    assert "every" not in nightly
    local = datetime.fromisoformat(nightly["next_run_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (3, 0)
    assert (often["every"], often["missed"], often["overlap"], often["timezone"]) == (
        3600, "latest", True, "UTC")
    assert "cron" not in often
    assert datetime.fromisoformat(often["next_run_at"]).timestamp() % 3600 == 0


async def test_pause_and_resume_answer_the_schedule(make_client: MakeClient) -> None:
    client = await make_client(schedules=SCHEDULES)
    paused = await _json(client, "POST", "/schedules/nightly/pause", 200)
    assert (paused["name"], paused["paused"], paused["next_run_at"]) == ("nightly", True, None)
    again = await _json(client, "POST", "/schedules/nightly/pause", 200)  # idempotent
    assert again["paused"] is True
    listed = {s["name"]: s for s in (await _json(client, "GET", "/schedules", 200))["items"]}
    assert (listed["nightly"]["paused"], listed["often"]["paused"]) == (True, False)
    resumed = await _json(client, "POST", "/schedules/nightly/resume", 200)
    assert resumed["paused"] is False
    assert resumed["next_run_at"] is not None


async def test_an_unknown_schedule_is_a_404_problem(make_client: MakeClient) -> None:
    client = await make_client(schedules=SCHEDULES)
    for action in ("pause", "resume"):
        response = await client.post(f"/schedules/nope/{action}")
        assert response.status_code == 404
        assert response.content_type == "application/problem+json"
        body = await response.get_json()
        assert body.keys() >= PROBLEM_FIELDS
        assert (body["code"], body["detail"]) == ("schedule-not-found",
                                                  "no schedule named 'nope'")
    response = await client.post("/schedules/" + "x" * 5000 + "/pause")
    assert response.status_code == 404
    assert "x" * 200 not in (await response.get_data(as_text=True))  # never echoed whole
    assert (await client.get("/schedules/nightly/pause")).status_code == 405


async def test_no_schedules_is_an_empty_list(client: Client) -> None:
    assert await _json(client, "GET", "/schedules", 200) == {"items": []}


async def test_schedules_need_a_token_when_tokens_are_set(make_client: MakeClient) -> None:
    client = await make_client(schedules=SCHEDULES, api_tokens=("secret",))
    assert (await client.get("/schedules")).status_code == 401
    assert (await client.post("/schedules/nightly/pause")).status_code == 401
    assert (await _json(client, "GET", "/schedules", 200, bearer("secret")))["items"]
    paused = await _json(client, "POST", "/schedules/nightly/pause", 200, bearer("secret"))
    assert paused["paused"] is True


async def test_the_openapi_document_has_the_schedule_routes(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    listing = spec["paths"]["/schedules"]["get"]
    pause = spec["paths"]["/schedules/{name}/pause"]["post"]
    resume = spec["paths"]["/schedules/{name}/resume"]["post"]
    assert (listing["operationId"], pause["operationId"], resume["operationId"]) == (
        "listSchedules", "pauseSchedule", "resumeSchedule")
    assert list(pause["responses"]["404"]["content"]) == ["application/problem+json"]
    assert {"ScheduleOut", "ScheduleListOut"} <= spec["components"]["schemas"].keys()
    (name,) = [p for p in pause["parameters"] if p["name"] == "name"]
    assert name["schema"]["pattern"].startswith("^")


async def test_an_embedding_app_declares_schedules_in_code() -> None:
    app = Quart("host")
    offload = Offload(app, settings=Settings(task_modules=("service.demo",)))
    offload.schedule("sum", "add", every=60, args=[2, 3])

    @offload.task
    async def report(kind: str) -> str:
        return kind

    offload.schedule("report", report, cron="0 3 * * 1-5", kwargs={"kind": "weekly"})
    async with app.test_app() as started:
        client = started.test_client()
        items = (await _json(client, "GET", "/offload/schedules", 200))["items"]
        assert [(s["name"], s["task"]) for s in items] == [("report", "report"), ("sum", "add")]
        assert offload.service.scheduler.running
    async with app.test_app() as started:  # a second serving cycle keeps them
        items = (await _json(started.test_client(), "GET", "/offload/schedules", 200))["items"]
        assert len(items) == 2


async def test_a_schedule_with_bad_arguments_stops_the_app_from_starting() -> None:
    app = Quart("host")
    offload = Offload(app, settings=settings(task_modules=("service.demo",)))
    offload.schedule("sum", "add", every=60, args=["two", 3])
    with pytest.raises(LifespanError, match="schedule 'sum': bad arguments for 'add'"):
        async with app.test_app():
            pass

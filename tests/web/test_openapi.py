"""What /openapi.json says beyond quart-schema's defaults (service/web/openapi.py): the
real media types and headers of answers, the bounds that come from settings, and the
submission body task type by task type. tests/test_schemathesis.py checks the service
against all of it; these tests pin the document itself."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_schema import QuartSchema

from service import Offload

from ..conftest import settings
from .conftest import MakeClient

Spec = dict[str, Any]


async def spec_of(client: Client, prefix: str = "") -> Spec:
    response = await client.get(f"{prefix}/openapi.json")
    assert response.status_code == 200
    spec: Spec = await response.get_json()
    return spec


def responses(spec: Spec, path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = spec["paths"][path][method]["responses"]
    return found


async def test_problems_are_problem_json_with_their_headers(client: Client) -> None:
    spec = await spec_of(client)
    submit = responses(spec, "/tasks", "post")

    for status in ("400", "401", "413", "415", "422", "429", "503"):
        assert list(submit[status]["content"]) == ["application/problem+json"], status
    assert submit["429"]["headers"]["Retry-After"]["required"] is True
    assert submit["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert {"Location", "Retry-After"} <= submit["202"]["headers"].keys()
    assert "Allow" in responses(spec, "/tasks/{task_id}", "get")["405"]["headers"]


async def test_answers_that_are_not_json_say_what_they_are(client: Client) -> None:
    spec = await spec_of(client)

    assert list(responses(spec, "/", "get")["200"]["content"]) == ["text/html"]
    assert list(responses(spec, "/metrics", "get")["200"]["content"]) == ["text/plain"]
    events = responses(spec, "/tasks/{task_id}/events", "get")["200"]["content"]
    data = events["text/event-stream"]["schema"]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/TaskOut"}
    assert "TaskOut" in spec["components"]["schemas"]
    assert "content" not in responses(spec, "/tasks/{task_id}", "delete")["204"]


async def test_bounds_come_from_the_settings(make_client: MakeClient) -> None:
    spec = await spec_of(await make_client(max_wait=7.5, max_page=33, max_batch=12,
                                           max_delay=99.0))
    wait = next(p for p in spec["paths"]["/tasks/{task_id}"]["get"]["parameters"]
                if p["name"] == "wait")
    limit = next(p for p in spec["paths"]["/tasks"]["get"]["parameters"]
                 if p["name"] == "limit")
    batch = spec["paths"]["/tasks/batch"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["tasks"]
    variant = spec["components"]["schemas"]["Submission"]["oneOf"][0]

    assert wait["schema"]["maximum"] == 7.5
    assert limit["schema"]["maximum"] == 33
    assert batch["maxItems"] == 12
    assert variant["properties"]["delay"]["anyOf"][0]["maximum"] == 99.0


async def test_submission_is_one_of_the_task_types_by_position_or_keyword(
    client: Client,
) -> None:
    spec = await spec_of(client)
    variants = spec["components"]["schemas"]["Submission"]["oneOf"]
    add = [v for v in variants if v["properties"]["name"] == {"const": "add"}]
    keyword_only = [v for v in variants
                    if v["properties"]["name"] == {"const": "keyword_only"}]

    # add(a: int, b: int): none, one or both by position, the rest by keyword
    assert [v["properties"]["args"]["maxItems"] for v in add] == [0, 1, 2]
    assert [v["properties"]["kwargs"]["required"] for v in add] == [["a", "b"], ["b"], []]
    assert add[1]["properties"]["args"]["prefixItems"] == [{"type": "integer"}]
    assert all(v["additionalProperties"] is False for v in add)
    # keyword_only(*, size: int, label: str = "x"): only by keyword
    assert len(keyword_only) == 1
    assert keyword_only[0]["properties"]["kwargs"]["required"] == ["size"]


async def test_answers_that_name_a_task_link_to_what_can_follow(client: Client) -> None:
    spec = await spec_of(client)
    links = responses(spec, "/tasks", "post")["202"]["links"]
    operation_ids = {op["operationId"] for item in spec["paths"].values()
                     for op in item.values()}

    assert {"GetTask", "TaskEvents", "CancelTask", "DeleteTask"} == links.keys()
    for link in links.values():
        assert link["operationId"] in operation_ids
        assert link["parameters"] == {"task_id": "$response.body#/id"}


async def test_idempotency_key_is_a_documented_header(client: Client) -> None:
    spec = await spec_of(client)
    header = next(p for p in spec["paths"]["/tasks"]["post"]["parameters"]
                  if p["name"] == "Idempotency-Key")

    assert header["in"] == "header"
    assert header["required"] is False


@pytest.mark.parametrize("key", ["k", "order 1234", "~" * 255])
async def test_keys_the_document_allows_are_accepted(client: Client, key: str) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [1, 2]},
                                 headers={"Idempotency-Key": key})

    assert response.status_code == 202


@pytest.mark.parametrize("key", [" k", "k ", "ключ", "k\x7f"])
async def test_keys_the_document_refuses_are_400(client: Client, key: str) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [1, 2]},
                                 headers={"Idempotency-Key": key})

    assert response.status_code == 400


async def test_get_on_the_batch_path_is_405_not_a_task_lookup(client: Client) -> None:
    response = await client.get("/tasks/batch")

    allowed = set(response.headers["Allow"].split(", "))
    assert response.status_code == 405
    assert "POST" in allowed
    assert not allowed & {"GET", "DELETE"}


async def test_integral_float_priority_is_the_integer(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [1, 2],
                                                 "priority": 3.0})

    assert response.status_code == 202
    assert (await response.get_json())["priority"] == 3


async def test_a_host_with_quart_schema_keeps_its_document_and_offload_has_its_own() -> None:
    app = Quart("host")
    QuartSchema(app, info={"title": "Host", "version": "1"})
    Offload(app, settings=settings(task_modules=()))

    async with app.test_app() as started:
        host = await spec_of(started.test_client())
        spec = await spec_of(started.test_client(), "/offload")

    assert host["info"]["title"] == "Host"
    assert not host["paths"]  # Offload's routes are not the host's to document
    assert spec["info"]["title"] == "Offload"
    assert list(responses(spec, "/offload/tasks", "post")["422"]["content"]) == [
        "application/problem+json"]
    assert all(path.startswith("/offload/") for path in spec["paths"])


class Point(BaseModel):
    x: int
    y: int


async def test_argument_models_become_components_the_variants_refer_to() -> None:
    app = Quart("shapes")
    offload = Offload(app, settings=settings(task_modules=()))

    @offload.task
    async def plot(point: Point) -> int:
        return point.x + point.y

    async with app.test_app() as started:
        client = started.test_client()
        spec = await spec_of(client, "/offload")
        ok = await client.post("/offload/tasks", json={"name": "plot", "kwargs": {
            "point": {"x": 1, "y": 2}}})

    schemas = spec["components"]["schemas"]
    by_keyword = schemas["Submission"]["oneOf"][0]["properties"]["kwargs"]["properties"]
    assert by_keyword["point"] == {"$ref": "#/components/schemas/plot.Point"}
    assert schemas["plot.Point"]["required"] == ["x", "y"]
    assert ok.status_code == 202

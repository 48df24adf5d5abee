"""A type's rate limit over HTTP: GET /task-types shows it, and the OpenAPI document
describes it."""

from __future__ import annotations

from typing import Any

from .conftest import WEB_MODULES, MakeClient

RATE_MODULES = (*WEB_MODULES, "tests.web.rate_tasks")


async def test_task_types_show_the_rate_limit(make_client: MakeClient) -> None:
    client = await make_client(task_modules=RATE_MODULES)
    response = await client.get("/task-types")
    assert response.status_code == 200
    items = {t["name"]: t for t in (await response.get_json())["items"]}
    limited = items["call_partner"]
    assert (limited["rate_limit"], limited["rate"]) == ("10/m", {"starts": 10, "period": 60.0})
    assert (items["add"]["rate_limit"], items["add"]["rate"]) == (None, None)


async def test_the_openapi_document_describes_the_rate_limit(make_client: MakeClient) -> None:
    client = await make_client(task_modules=RATE_MODULES)
    spec: dict[str, Any] = await (await client.get("/openapi.json")).get_json()
    schemas = spec["components"]["schemas"]
    answer = spec["paths"]["/task-types"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    listing = schemas[answer["$ref"].rsplit("/", 1)[1]]
    item = schemas[listing["properties"]["items"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"rate_limit", "rate"} <= set(item["required"])
    assert {"type": "string"} in item["properties"]["rate_limit"]["anyOf"]
    rate_ref = next(s["$ref"] for s in item["properties"]["rate"]["anyOf"] if "$ref" in s)
    rate = schemas[rate_ref.rsplit("/", 1)[1]]
    assert rate["properties"]["starts"]["type"] == "integer"
    assert rate["properties"]["period"]["type"] == "number"
    assert rate["required"] == ["starts", "period"]


async def test_the_setting_replaces_a_declared_limit(make_client: MakeClient) -> None:
    client = await make_client(task_modules=RATE_MODULES,
                               rate_limits='{"call_partner": "2/s", "add": "1/h"}')
    items = {t["name"]: t for t in (await (await client.get("/task-types")).get_json())["items"]}
    assert items["call_partner"]["rate"] == {"starts": 2, "period": 1.0}
    assert items["add"]["rate_limit"] == "1/h"

"""What /openapi.json says beyond quart-schema's defaults (service/web/openapi.py): the
real media types and headers of answers, the bounds that come from settings, the submission
body and each task type's parameters, plain operation ids, the bearer scheme when tokens are
set, and nothing that client generators refuse. tests/test_schemathesis.py checks the
service against all of it, tests/e2e/test_generated_client.py generates clients from it;
these tests pin the document itself."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from pydantic import BaseModel
from quart import Blueprint, Quart
from quart.typing import TestClientProtocol as Client
from quart_schema import QuartSchema

from service import Offload
from service.web.openapi import camel_case
from service.web.openapi_submission import parameters_component_name

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
    delay = spec["components"]["schemas"]["Submission"]["properties"]["delay"]

    assert wait["schema"]["maximum"] == 7.5
    assert limit["schema"]["maximum"] == 33
    assert batch["maxItems"] == 12
    assert {"type": "number", "minimum": 0, "maximum": 99.0} in delay["anyOf"]


async def test_submission_is_one_object_with_the_task_types_as_an_enum(
    client: Client,
) -> None:
    spec = await spec_of(client)
    submission = spec["components"]["schemas"]["Submission"]
    properties = submission["properties"]
    types = await (await client.get("/task-types")).get_json()

    assert submission["type"] == "object"
    assert not {"oneOf", "anyOf", "allOf"} & submission.keys()
    assert submission["required"] == ["name"]
    assert properties["name"]["enum"] == [t["name"] for t in types["items"]]
    assert properties["args"]["type"] == "array"
    assert properties["kwargs"]["type"] == "object"
    assert {"delay", "priority", "timeout"} <= properties.keys()
    assert properties["priority"]["description"] == "Higher runs first. Default: 0."
    assert not [p for p in properties.values() if "default" in p]
    body = spec["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Submission"}
    batch = spec["paths"]["/tasks/batch"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["tasks"]
    assert batch["items"] == {"$ref": "#/components/schemas/Submission"}
    assert "SubmitBody" not in spec["components"]["schemas"]  # one model, not two


async def test_each_task_type_has_its_parameters_as_a_named_component(
    client: Client,
) -> None:
    schemas = (await spec_of(client))["components"]["schemas"]
    types = (await (await client.get("/task-types")).get_json())["items"]
    by_name = {t["name"]: t["parameters"] for t in types}

    add = schemas["AddParameters"]
    assert add["title"] == "AddParameters"
    assert add["required"] == ["a", "b"]
    assert add["properties"]["a"]["type"] == "integer"
    assert add["additionalProperties"] is False  # another keyword is a 422
    keyword_only = schemas["KeywordOnlyParameters"]
    assert keyword_only["required"] == ["size"]
    # a default in words: openapi-typescript would make a property with one required
    assert keyword_only["properties"]["label"] == {"title": "Label", "type": "string",
                                                   "description": 'Default: "x".'}
    for name, parameters in by_name.items():  # the same schema GET /task-types gives
        component = schemas[parameters_component_name(name)]
        assert component.get("required") == parameters.get("required"), name
        for key, schema in parameters["properties"].items():
            assert component["properties"][key].items() >= {
                k: v for k, v in schema.items() if k != "default"}.items(), (name, key)


async def test_a_wrong_argument_is_a_documented_422(client: Client) -> None:
    spec = await spec_of(client)
    documented = responses(spec, "/tasks", "post")["422"]

    response = await client.post("/tasks", json={"name": "add", "args": [2],
                                                 "kwargs": {"b": "three"}})

    assert response.status_code == 422
    assert response.mimetype in documented["content"]
    assert "kwargs.b" in {e["field"] for e in (await response.get_json())["errors"]}


# Keywords whose value is a schema: a generator (openapi-python-client) refuses a boolean
# there, though OpenAPI 3.1 allows it. additionalProperties: false it takes.
SCHEMA_VALUED = {"items", "not", "if", "then", "else", "contains", "propertyNames",
                 "additionalItems", "unevaluatedItems", "unevaluatedProperties",
                 "contentSchema", "schema"}
SCHEMA_LISTS = {"prefixItems", "allOf", "anyOf", "oneOf"}
SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "dependentSchemas"}


def boolean_schemas(node: Any, where: str = "#") -> list[str]:
    """Where the document has ``true`` or ``false`` in place of a schema."""
    found: list[str] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            found += boolean_schemas(item, f"{where}/{i}")
    if not isinstance(node, dict):
        return found
    for key, value in node.items():
        here = f"{where}/{key}"
        if key in SCHEMA_VALUED and isinstance(value, bool):
            found.append(here)
        elif key in SCHEMA_LISTS and isinstance(value, list):
            found += [f"{here}/{i}" for i, v in enumerate(value) if isinstance(v, bool)]
        elif key in SCHEMA_MAPS and isinstance(value, dict):
            found += [f"{here}/{k}" for k, v in value.items() if isinstance(v, bool)]
        found += boolean_schemas(value, here)
    return found


def references(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(references(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(references(v) for v in node))
    return set()


async def test_no_boolean_schemas_and_every_reference_resolves(client: Client) -> None:
    spec = await spec_of(client)
    schemas = spec["components"]["schemas"]

    assert boolean_schemas(spec) == []
    assert boolean_schemas({"items": False, "properties": {"x": True}}) == [
        "#/items", "#/properties/x"]  # the walk itself finds them
    for ref in references(spec):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PLAIN_IDS = {
    ("post", "/tasks"): "submitTask", ("post", "/tasks/batch"): "submitBatch",
    ("get", "/tasks/{task_id}"): "getTask", ("get", "/tasks"): "listTasks",
    ("post", "/tasks/{task_id}/cancel"): "cancelTask",
    ("delete", "/tasks/{task_id}"): "deleteTask",
    ("get", "/tasks/{task_id}/events"): "taskEvents", ("get", "/task-types"): "listTaskTypes",
    ("get", "/stats"): "getStats", ("get", "/metrics"): "getMetrics",
    ("get", "/healthz"): "checkLiveness", ("get", "/readyz"): "checkReadiness",
}


def operation_ids(spec: Spec, prefix: str = "") -> dict[tuple[str, str], str]:
    return {(method, path.removeprefix(prefix)): operation["operationId"]
            for path, item in spec["paths"].items() for method, operation in item.items()}


def assert_plain(ids: dict[tuple[str, str], str]) -> None:
    """Every operation: a unique camelCase id, no HTTP method and underscore in front."""
    assert len(set(ids.values())) == len(ids), ids
    for (method, path), operation_id in ids.items():
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*", operation_id), (method, path, operation_id)
        assert not operation_id.startswith(tuple(f"{m}_" for m in HTTP_METHODS))


async def test_operations_have_plain_unique_camel_case_ids(client: Client) -> None:
    ids = operation_ids(await spec_of(client))

    assert_plain(ids)
    assert PLAIN_IDS.items() <= ids.items()
    assert ids[("get", "/process")] == "process"  # a route added later: its view's name


@pytest.mark.parametrize(("name", "expected"), [
    ("get_task", "getTask"), ("list_tasks", "listTasks"), ("healthz", "healthz"),
    ("_private_view", "privateView"), ("get_task_2", "getTask2")])
def test_a_view_name_becomes_a_camel_case_id(name: str, expected: str) -> None:
    assert camel_case(name) == expected


async def test_a_new_route_with_several_methods_gets_an_id_for_each() -> None:
    app = Quart("host")
    Offload(app, settings=settings(task_modules=()))
    later = Blueprint("offload_later", __name__)

    @later.route("/notes/<note>", methods=["GET", "PUT"])
    async def note_view(note: str) -> str:
        return note
    app.register_blueprint(later, url_prefix="/offload")

    async with app.test_app() as started:
        spec = await spec_of(started.test_client(), "/offload")

    ids = operation_ids(spec, "/offload")
    assert_plain(ids)
    assert {ids[("get", "/notes/{note}")], ids[("put", "/notes/{note}")]} == {
        "getNoteView", "putNoteView"}


async def test_answers_that_name_a_task_link_to_what_can_follow(client: Client) -> None:
    spec = await spec_of(client)
    links = responses(spec, "/tasks", "post")["202"]["links"]
    operation_ids = {op["operationId"] for item in spec["paths"].values()
                     for op in item.values()}

    assert {"GetTask", "TaskEvents", "CancelTask", "DeleteTask"} == links.keys()
    assert links["GetTask"]["operationId"] == "getTask"
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


async def test_argument_models_become_components_the_parameters_refer_to() -> None:
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
    by_keyword = schemas["PlotParameters"]["properties"]
    assert by_keyword["point"] == {"$ref": "#/components/schemas/plot.Point"}
    assert schemas["plot.Point"]["required"] == ["x", "y"]
    assert ok.status_code == 202


# -- bearer tokens ------------------------------------------------------------------------

BEARER = {"bearerAuth": {"type": "http", "scheme": "bearer",
                         "description": "One of the tokens of OFFLOAD_API_TOKENS."}}
OPEN = {("get", "/healthz"), ("get", "/readyz"), ("get", "/")}


async def assert_security_where_a_token_is_asked(client: Client, prefix: str) -> None:
    """Each operation declares the bearer scheme exactly when a call without a token is a
    401 (asked for real, an id made up for each path parameter)."""
    spec = await spec_of(client, prefix)
    assert spec["components"]["securitySchemes"] == BEARER
    asked = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            async with asyncio.timeout(10):  # a stream open to anyone would not end
                answer = await client.open(re.sub(r"\{[^}]+\}", "nope", path),
                                           method=method.upper())
            key = (method, path.removeprefix(prefix))
            if answer.status_code == 401:
                asked.add(key)
                assert operation["security"] == [{"bearerAuth": []}], key
            else:
                assert "security" not in operation, key
    assert PLAIN_IDS.keys() - OPEN <= asked
    assert not OPEN & asked


async def test_with_tokens_the_document_declares_the_bearer_scheme(
    make_client: MakeClient,
) -> None:
    client = await make_client(api_tokens=("secret-token",))

    await assert_security_where_a_token_is_asked(client, "")


async def test_an_embedded_api_declares_it_under_its_prefix_too() -> None:
    app = Quart("host")
    Offload(app, settings=settings(api_tokens=("secret-token",)))

    async with app.test_app() as started:
        await assert_security_where_a_token_is_asked(started.test_client(), "/offload")


async def test_without_tokens_no_operation_asks_for_one(client: Client) -> None:
    spec = await spec_of(client)

    assert "securitySchemes" not in spec["components"]
    assert not [op for item in spec["paths"].values() for op in item.values()
                if "security" in op]


async def test_an_embedded_document_gets_the_same_treatment() -> None:
    app = Quart("host")
    Offload(app, settings=settings())

    async with app.test_app() as started:
        spec = await spec_of(started.test_client(), "/offload")

    ids = operation_ids(spec, "/offload")
    assert_plain(ids)
    assert PLAIN_IDS.items() <= ids.items()
    assert boolean_schemas(spec) == []
    assert "add" in spec["components"]["schemas"]["Submission"]["properties"]["name"]["enum"]
    assert "AddParameters" in spec["components"]["schemas"]

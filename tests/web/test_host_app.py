"""Offload embedded in a host app that has its own ``/``, its own quart-schema document and
its own JSON routes: every host route answers exactly as it does without Offload, and
Offload's own routes, under ``/offload``, still parse JSON strictly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel
from quart import Quart, jsonify, request
from quart.typing import ResponseReturnValue
from quart_schema import QuartSchema, validate_request
from werkzeug.routing import BaseConverter

from service import Offload

from ..conftest import settings
from .helpers import problem

DEEP = b"[" * 100_000 + b"]" * 100_000


class Item(BaseModel):
    name: str
    size: int


class UpperConverter(BaseConverter):
    """A host converter named as Offload's would be, were it not namespaced."""

    regex = r"[A-Z]+"


def host_app(*, offload: bool, schema: bool) -> Quart:
    """The host: its own routes, with or without quart-schema, with or without Offload."""
    app = Quart("host")
    app.url_map.converters["task_id"] = UpperConverter
    if schema:
        QuartSchema(app, info={"title": "Host", "version": "1"})

    @app.get("/")
    async def home() -> str:
        return "the host's home"

    @app.post("/echo")
    async def echo() -> ResponseReturnValue:
        return jsonify({"got": await request.get_json()})

    @app.post("/echo-silent")
    async def echo_silent() -> ResponseReturnValue:
        return {"got": repr(await request.get_json(silent=True))}

    @app.get("/jobs/<task_id:code>")
    async def job(code: str) -> ResponseReturnValue:
        return {"code": code}

    @app.get("/fail")
    async def fail() -> ResponseReturnValue:
        raise ValueError("the host's own bug")

    if schema:
        @app.post("/items")
        @validate_request(Item)
        async def items(data: Item) -> Item:
            return data

    if offload:
        Offload(app, settings=settings(task_modules=()))
    return app


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


JSON = {"Content-Type": "application/json"}
CALLS = [
    Call("GET", "/"), Call("GET", "/stats"), Call("GET", "/metrics"), Call("GET", "/healthz"),
    Call("GET", "/readyz"), Call("GET", "/tasks"), Call("GET", "/task-types"),
    Call("GET", "/docs"), Call("GET", "/openapi.json"), Call("GET", "/nowhere"),
    Call("POST", "/tasks", b'{"name": "x"}', JSON),
    Call("POST", "/echo", b'{"a": [1, 2]}', JSON),
    Call("POST", "/echo", b'{"a": NaN}', JSON),
    Call("POST", "/echo", b'{"a": Infinity}', JSON),
    Call("POST", "/echo", b'{"a": "\xff"}', JSON),
    Call("POST", "/echo", b"{", JSON),
    Call("POST", "/echo-silent", b'{"a": NaN}', JSON),
    Call("POST", "/echo-silent", b"{", JSON),
    Call("GET", "/jobs/ABC"), Call("GET", "/jobs/abc"),
    Call("GET", "/fail"),
    Call("POST", "/items", b'{"name": "a", "size": 2}', JSON),
    Call("POST", "/items", b'{"name": "a", "size": NaN}', JSON),
    Call("POST", "/items", b'{"name": "a"}', JSON),
]


async def answers(app: Quart, calls: list[Call]) -> list[tuple[int, dict[str, str], bytes]]:
    """Each call's status, headers and body, from the started app."""
    found = []
    async with app.test_app() as started:
        client = started.test_client()
        for call in calls:
            response = await client.open(call.path, method=call.method, data=call.body,
                                         headers=call.headers)
            found.append((response.status_code, dict(response.headers),
                          await response.get_data()))
    return found


@pytest.mark.parametrize("schema", [False, True], ids=["plain host", "quart-schema host"])
async def test_every_host_route_answers_as_without_offload(schema: bool) -> None:
    calls = [c for c in CALLS if schema or c.path != "/items"]

    alone = await answers(host_app(offload=False, schema=schema), calls)
    embedded = await answers(host_app(offload=True, schema=schema), calls)

    for call, before, after in zip(calls, alone, embedded, strict=True):
        assert after == before, call


async def test_nan_reaches_a_host_route_as_it_would_without_offload() -> None:
    (status, _, body), = await answers(host_app(offload=True, schema=False),
                                       [Call("POST", "/echo", b'{"a": NaN}', JSON)])

    assert status == 200
    assert body == b'{"got":{"a":NaN}}\n'


@pytest.mark.parametrize("schema", [False, True], ids=["plain host", "quart-schema host"])
async def test_the_app_object_is_left_as_it_was(schema: bool) -> None:
    alone = host_app(offload=False, schema=schema)
    embedded = host_app(offload=True, schema=schema)

    assert type(embedded.json).__mro__[1:] == type(alone.json).__mro__[1:]
    assert type(embedded.json).__name__ == type(alone.json).__name__
    assert embedded.make_response.__qualname__ == alone.make_response.__qualname__
    assert embedded.test_client_class.__mro__[1:] == alone.test_client_class.__mro__[1:]
    assert ("QUART_SCHEMA" in embedded.extensions) is schema
    assert embedded.url_map.converters["task_id"] is UpperConverter
    assert not {k for k in embedded.config if k.startswith("QUART_SCHEMA")} - set(alone.config)
    for hooks in ("error_handler_spec", "before_request_funcs", "after_request_funcs"):
        # Offload's own are its blueprints'; the app-wide ones (key None) stay as they were
        assert len(getattr(embedded, hooks)[None]) == len(getattr(alone, hooks)[None]), hooks


@pytest.mark.parametrize("schema", [False, True], ids=["plain host", "quart-schema host"])
async def test_offloads_routes_parse_json_strictly_under_their_prefix(schema: bool) -> None:
    app = host_app(offload=True, schema=schema)

    async with app.test_app() as started:
        client = started.test_client()
        for body in (b'{"name": "x", "args": [NaN]}', b'{"name": "\xff"}', DEEP):
            await problem(await client.post("/offload/tasks", data=body, headers=JSON), 400)
        await problem(await client.get("/offload/tasks?limit=0"), 400)
        assert (await client.get("/offload/healthz")).status_code == 200
        assert (await client.get("/offload/")).status_code == 200  # the dashboard
        page = await (await client.get("/offload/docs")).get_data(as_text=True)
        spec: dict[str, Any] = await (await client.get("/offload/openapi.json")).get_json()

    assert 'data-openapi-url="openapi.json"' in page
    assert spec["info"]["title"] == "Offload"
    assert {"/offload/tasks", "/offload/tasks/{task_id}", "/offload/stats",
            "/offload/metrics", "/offload/healthz", "/offload/"} <= spec["paths"].keys()
    assert not {"/", "/echo", "/items", "/offload/openapi.json"} & spec["paths"].keys()


async def test_a_host_can_ask_for_the_root() -> None:
    app = Quart("at_root")
    Offload(app, settings=settings(task_modules=()), url_prefix="")

    async with app.test_app() as started:
        client = started.test_client()
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
        created = await client.post("/tasks", json={"name": "nope"})

    await problem(created, 422)

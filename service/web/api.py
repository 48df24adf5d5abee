"""The HTTP API under ``/tasks``, ``/task-types``, ``/stats`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from quart import Blueprint, Response, current_app, g, request
from quart.blueprints import BlueprintSetupState
from quart_schema import (
    RequestSchemaValidationError,
    document_querystring,
    document_request,
    document_response,
    operation_id,
)
from quart_schema.validation import QuerystringValidationError
from werkzeug.exceptions import (
    BadRequest,
    RequestEntityTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from werkzeug.routing import BaseConverter

from .. import jsonutil
from ..core import Submission
from ..errors import BadQuery
from ..models import JSON, TaskRecord
from .events import event_stream
from .headers import optional_header
from .openapi import (
    IDEMPOTENCY_KEY_PATTERN,
    RETRY_AFTER,
    TASK_EVENT,
    Answer,
    Link,
    answers,
    problems,
    refine,
    refine_batch,
    refine_list,
    refine_submit,
    refine_task_id,
    refine_wait,
)
from .problems import mark_body_read, register_handlers
from .schemas import (
    BatchBody,
    BatchOut,
    ListQuery,
    StatsOut,
    SubmitBody,
    TaskListOut,
    TaskOut,
    TaskTypesOut,
    WaitQuery,
)

if TYPE_CHECKING:
    from .binding import AppBinding


class TaskIdConverter(BaseConverter):
    """A task id in a path: any segment but ``batch``, so that ``/tasks/batch`` is only the
    batch route (``GET /tasks/batch`` is a 405, not a search for a task named "batch")."""

    regex = r"(?!batch$)[^/]+"


api = Blueprint("offload_api", __name__)


@api.record_once
def _add_converter(state: BlueprintSetupState) -> None:
    # Recorded before any route: the rules below are bound after it, in order. Named so
    # that a host app's own converters are neither taken nor replaced.
    state.app.url_map.converters.setdefault("offload_task_id", TaskIdConverter)


register_handlers(api)
MAX_IDEMPOTENCY_KEY = 255  # characters (IDEMPOTENCY_KEY_PATTERN says the same)


def _task_links(id_at: str) -> dict[str, Link]:
    """What can follow an answer that names a task (its id at ``id_at``)."""
    ids = {"task_id": f"$response.body#{id_at}"}
    return {"GetTask": Link("GET", "get_task", ids),
            "TaskEvents": Link("GET", "task_events", ids),
            "CancelTask": Link("POST", "cancel_task", ids),
            "DeleteTask": Link("DELETE", "delete_task", ids)}


LOCATION = {"description": "Where to poll the task.", "schema": {"type": "string"},
            "required": True}
View = TypeVar("View", bound=Callable[..., Awaitable[Any]])
Body = TypeVar("Body", bound=BaseModel)


def offload() -> AppBinding:
    """Offload on the app serving this request (its service, token check and prefix)."""
    binding: AppBinding = current_app.extensions["offload"]
    return binding


def owner() -> str | None:
    caller: str | None = g.get("offload_owner")
    return caller


@api.before_request
async def authenticate() -> None:
    auth = offload().auth
    g.offload_owner = auth.owner(optional_header("Authorization")) if auth.enabled else None


def json_response(body: JSON, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    response = Response(jsonutil.dumps(body), status, content_type="application/json")
    if headers:
        response.headers.update(headers)
    return response


def task_response(record: TaskRecord, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    body = record.to_json(offload().service.settings.expose_tracebacks)
    return json_response(body, status, headers)


def json_body(model: type[Body]) -> Callable[[View], View]:
    """Read, check and validate the JSON request body once, then call the view with it.

    In order: media type (415), declared then actual size (413), UTF-8 (400), JSON (400),
    ``model`` (422, as quart-schema's ``validate_request`` raises it). The view gets the
    model as ``data`` and, if it has a ``body`` parameter, the parsed JSON as ``body``.
    One read and one parse per request: no second ``get_json``, no ``TypeAdapter`` built
    per request, no task made by ``wait_for`` for a body that is already in. The body is
    parsed here, strictly (:func:`jsonutil.loads`), not by the app's JSON provider, which
    is the host app's own; nor does the host's quart-schema casing apply: the API's field
    names are its own.
    """
    def decorate(view: View) -> View:
        wants_body = "body" in inspect.signature(view).parameters

        @functools.wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = _parse(await _read_body(offload().service.settings.max_body))
            try:
                data = model.model_validate(value)
            except (TypeError, ValueError) as error:  # pydantic's ValidationError included
                raise RequestSchemaValidationError(error) from None
            if wants_body:
                kwargs["body"] = value
            return await view(*args, data=data, **kwargs)
        return document_request(model)(wrapper)  # type: ignore[return-value]
    return decorate


def query(model: type[Body]) -> Callable[[View], View]:
    """Validate the query string into ``model``; the view gets it as ``query_args``.

    quart-schema's ``validate_querystring`` does the same, but reads its settings from the
    app's config (absent when the host app does not use quart-schema, the host's own casing
    when it does) and builds a ``TypeAdapter`` per request. An invalid query is a 400.
    """
    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = request.args
            values = {key: (found if len(found := given.getlist(key)) > 1 else found[0])
                      for key in given}
            try:
                query_args = model.model_validate(values)
            except (TypeError, ValueError) as error:  # pydantic's ValidationError included
                raise QuerystringValidationError(error) from None
            return await view(*args, query_args=query_args, **kwargs)
        return document_querystring(model)(wrapper)  # type: ignore[return-value]
    return decorate


async def _read_body(limit: int) -> bytes:
    """The whole body, after checking its type and size (415, 413; 408 after the body
    timeout, as Quart's ``get_data``)."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaType("the request body must be application/json")
    length = request.content_length
    if length is not None and length > limit:
        raise RequestEntityTooLarge(f"the request body is larger than {limit} bytes")
    try:
        # asyncio.timeout, not the wait_for of get_data: no extra task per request
        async with asyncio.timeout(request.body_timeout):
            data: bytes = await request.body
    except TimeoutError:
        raise RequestTimeout() from None
    mark_body_read()
    if len(data) > limit:
        raise RequestEntityTooLarge(f"the request body is larger than {limit} bytes")
    return data


def _parse(data: bytes) -> JSON:
    """The body as JSON: decoded as UTF-8 first (as Quart's ``get_json`` does), then parsed
    strictly (:func:`jsonutil.loads`)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise BadRequest("the request body is not valid UTF-8") from None
    try:
        value: JSON = jsonutil.loads(text)
    except ValueError:
        raise BadRequest(f"the request body is not valid JSON: {_json_error(data)}") from None
    return value


def _json_error(data: bytes) -> str:
    """Why ``data`` does not parse (Quart's own error says only "Bad Request")."""
    try:
        jsonutil.loads(data)
    except ValueError as exc:
        return str(exc)[:200]
    return "unknown error"


def _submission(body: SubmitBody) -> Submission:
    return Submission(body.name, body.args, body.kwargs, body.delay, body.priority, body.timeout,
                      body.depends_on)


def _location(task_id: str) -> dict[str, str]:
    ext = offload()
    return {"Location": f"{request.root_path}{ext.url_prefix}/tasks/{task_id}",
            "Retry-After": str(ext.service.settings.poll_after)}


def _idempotency_key() -> str | None:
    key = optional_header("Idempotency-Key")
    if key is not None and not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII "
                         "characters (spaces only inside)")
    return key


@api.post("/tasks")
@document_response(TaskOut, 202)
@document_response(TaskOut, 200)
@answers(Answer(202, headers={"Location": LOCATION, "Retry-After": RETRY_AFTER},
                links=_task_links("/id")),
         Answer(200, headers={"Location": LOCATION, "Retry-After": RETRY_AFTER},
                links=_task_links("/id")))
@refine(refine_submit)
@problems(400, 401, 413, 415, 422, 429, 503)
@json_body(SubmitBody)
async def submit_task(data: SubmitBody, body: JSON) -> Response:
    """Submit a task. Answers at once with 202; ``Location`` is where to poll."""
    key = _idempotency_key()
    body_hash = None
    if key is not None:
        canonical = jsonutil.dumps_canonical(body)
        body_hash = hashlib.sha256(canonical).hexdigest()
    record, created = await offload().service.submit(
        _submission(data), owner=owner(), idempotency_key=key, request_hash=body_hash)
    return task_response(record, 202 if created else 200, _location(record.id))


@api.post("/tasks/batch")
@document_response(BatchOut, 202)
@answers(Answer(202, headers={"Retry-After": RETRY_AFTER}, links=_task_links("/items/0/id")))
@refine(refine_batch)
@problems(400, 401, 413, 415, 422, 429, 503)
@json_body(BatchBody)
async def submit_batch(data: BatchBody) -> Response:
    """Submit up to 1000 tasks at once: all are accepted or none is."""
    if optional_header("Idempotency-Key") is not None:
        raise BadRequest("Idempotency-Key is not supported on /tasks/batch")
    service = offload().service
    records = await service.submit_many([_submission(t) for t in data.tasks], owner=owner())
    items = [r.to_json(service.settings.expose_tracebacks) for r in records]
    return json_response({"items": items}, 202,
                         {"Retry-After": str(service.settings.poll_after)})


@api.get("/tasks/<offload_task_id:task_id>")
@refine(refine_task_id)
@document_response(TaskOut, 200)
@refine(refine_wait)
@problems(400, 401, 404, 405)
@query(WaitQuery)
async def get_task(task_id: str, query_args: WaitQuery) -> Response:
    """The task. ``?wait=N`` holds the request until it is terminal or N seconds pass."""
    service = offload().service
    if query_args.wait is None:
        return task_response(await service.get(task_id, owner()))
    if query_args.wait > service.settings.max_wait:
        raise BadQuery(f"wait must be between 0 and {service.settings.max_wait:g} seconds")
    return task_response(await service.wait(task_id, query_args.wait, owner()))


@api.get("/tasks/<offload_task_id:task_id>/events")
@refine(refine_task_id)
@answers(Answer(200, "text/event-stream", TASK_EVENT,
                "Server-Sent Events: `status` and `progress`, each with the whole task as "
                "`data`, until the terminal one."))
@problems(401, 404)
async def task_events(task_id: str) -> Response:
    """Server-Sent Events: ``status`` and ``progress`` events until the terminal one."""
    service = offload().service
    record, subscription = await service.subscribe(task_id, owner())
    return await event_stream(record, subscription, service.settings)


@api.post("/tasks/<offload_task_id:task_id>/cancel")
@refine(refine_task_id)
@document_response(TaskOut, 202)
@answers(Answer(202, links=_task_links("/id")))
@problems(401, 404, 409)
async def cancel_task(task_id: str) -> Response:
    """Cancel a queued, scheduled, waiting or running task (and what waits for it)."""
    return task_response(await offload().service.cancel(task_id, owner()), 202)


@api.delete("/tasks/<offload_task_id:task_id>")
@refine(refine_task_id)
@answers(Answer(204, description="Forgotten.", empty=True))
@problems(401, 404, 405, 409)
async def delete_task(task_id: str) -> Response:
    """Forget a finished task's record."""
    await offload().service.delete(task_id, owner())
    return Response(b"", 204)


@api.get("/tasks")
@document_response(TaskListOut, 200)
@answers(Answer(200, links=_task_links("/items/0/id")))
@refine(refine_list)
@problems(400, 401)
@query(ListQuery)
async def list_tasks(query_args: ListQuery) -> Response:
    """Tasks, newest first, filtered by ``status`` (repeatable) and ``name``."""
    service = offload().service
    items, cursor = await service.list(
        statuses=query_args.status, name=query_args.name, owner=owner(),
        limit=query_args.limit, cursor=query_args.cursor)
    tracebacks = service.settings.expose_tracebacks
    return json_response({"items": [r.to_json(tracebacks) for r in items],
                          "next_cursor": cursor})


@api.get("/task-types")
@document_response(TaskTypesOut, 200)
@problems(401)
@operation_id("listTaskTypes")
async def task_types() -> Response:
    """The registered task types, with a JSON Schema of each one's parameters."""
    registry = offload().service.registry
    return json_response({"items": [t.describe() for t in registry]})


@api.get("/stats")
@document_response(StatsOut, 200)
@problems(401)
@operation_id("getStats")
async def stats() -> Response:
    """Counts by status, queue depth, running tasks, capacity and uptime."""
    return json_response(await offload().service.stats(owner()))


@api.get("/metrics")
@answers(Answer(200, "text/plain", {"type": "string"}, "Prometheus text format."))
@problems(401)
@operation_id("getMetrics")
async def metrics() -> Response:
    """Prometheus metrics (text format)."""
    body = await offload().service.metrics_exposition()
    return Response(body, 200, content_type="text/plain; version=0.0.4; charset=utf-8")


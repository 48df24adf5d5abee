"""The OpenAPI document: quart-schema's, made exact.

quart-schema documents JSON bodies from the pydantic models. This provider adds what it
cannot say: problem details as ``application/problem+json`` (with ``WWW-Authenticate``,
``Retry-After`` and ``Allow`` where they are sent), non-JSON answers (the dashboard, metrics,
event streams, 204), response headers (``Location``, ``Retry-After``), the bounds that come
from settings (``limit``, ``wait``, ``delay``), the body of ``POST /tasks`` and each task
type's parameters (:mod:`.openapi_submission`), and the bearer scheme when tokens are set.

And what client generators need: plain operation ids (``submitTask``, ``getTask``: the view's
name in camelCase, or the id its ``operation_id`` decorator gives, with no HTTP method in
front), and each answer's model a component it refers to.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from quart_schema import document_response
from quart_schema.conversion import model_schema
from quart_schema.openapi import (
    QUART_SCHEMA_HIDDEN_ATTRIBUTE,
    QUART_SCHEMA_OPERATION_ID_ATTRIBUTE,
    OpenAPIProvider,
)
from werkzeug.routing.rules import Rule

from .openapi_submission import submission_components
from .schemas import Problem, TaskOut

if TYPE_CHECKING:
    from .binding import AppBinding as Offload

F = TypeVar("F", bound=Callable[..., Any])
Schema = dict[str, Any]
Refine = Callable[[Schema, "Offload"], None]
OFFLOAD_BLUEPRINT_PREFIX = "offload_"  # every blueprint of Offload's is named so
# not in the document: the docs, and the dashboard's static files
DOCS_BLUEPRINTS = frozenset({"offload_docs", "offload_docs_page", "offload_dashboard"})

ANSWERS = "_offload_openapi_answers"
REFINE = "_offload_openapi_refine"
PROBLEM_JSON = "application/problem+json"
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]{0,253}[!-~])?$"

# One Server-Sent Event (OpenAPI 3.1: the schema of an event stream describes each event).
TASK_EVENT: Schema = {
    "type": "object", "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["status", "progress"]},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": "#/components/schemas/TaskOut"},
                 "description": "The whole task, as JSON."},
        "retry": {"type": "integer", "minimum": 0},
    },
}
RETRY_AFTER: Schema = {
    "description": "Seconds to wait before asking again.",
    "schema": {"type": "integer", "minimum": 0}, "required": True,
}
# What comes with a problem of this status, besides its body.
PROBLEM_HEADERS: dict[int, dict[str, Schema]] = {
    401: {"WWW-Authenticate": {"description": "The bearer scheme.",
                               "schema": {"type": "string"}, "required": True}},
    405: {"Allow": {"description": "The methods the path takes.",
                    "schema": {"type": "string"}, "required": True}},
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}


@dataclass(frozen=True)
class Answer:
    """One documented answer of a route: a status, its body's media type and schema, its
    headers and links. Without a media type, what quart-schema documents for the status
    (a JSON body) stays, and headers and links are added; ``empty``: no body at all."""

    status: int
    content_type: str | None = None
    schema: Schema | None = None
    description: str = ""
    headers: dict[str, Schema] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    empty: bool = False


@dataclass(frozen=True)
class Link:
    """An OpenAPI link to another route of the same blueprint, by its view's name: where
    the answer's values can be used next (``task_id`` from ``$response.body#/id``)."""

    method: str
    view: str
    parameters: dict[str, str]


def answers(*items: Answer) -> Callable[[F], F]:
    """Document answers of a route beyond quart-schema's JSON bodies."""
    def decorate(view: F) -> F:
        existing: list[Answer] = getattr(view, ANSWERS, [])
        setattr(view, ANSWERS, [*existing, *items])
        return view
    return decorate


def problems(*codes: int) -> Callable[[F], F]:
    """Document problem-details answers (quart-schema sees a JSON body; ours, the real media
    type and headers)."""
    def decorate(view: F) -> F:
        for code in codes:
            view = document_response(Problem, code)(view)
        return answers(*(Answer(code, PROBLEM_JSON) for code in codes))(view)
    return decorate


def refine(function: Refine) -> Callable[[F], F]:
    """Let ``function(operation, offload)`` adjust the route's documented operation with what
    depends on the running service (its settings, its task types)."""
    def decorate(view: F) -> F:
        previous: Refine | None = getattr(view, REFINE, None)

        def both(operation: Schema, offload: Offload) -> None:
            if previous is not None:
                previous(operation, offload)
            function(operation, offload)
        setattr(view, REFINE, both)
        return view
    return decorate


def is_offload_endpoint(endpoint: str) -> bool:
    """An endpoint of one of Offload's own blueprints."""
    return endpoint.partition(".")[0].startswith(OFFLOAD_BLUEPRINT_PREFIX)


def hide_from_host_documents(view_functions: dict[str, Callable[..., Any]]) -> None:
    """Mark Offload's views hidden from a host app's own quart-schema document (Offload's
    document is its own, under its prefix)."""
    for endpoint, view in view_functions.items():
        if is_offload_endpoint(endpoint):
            setattr(view, QUART_SCHEMA_HIDDEN_ATTRIBUTE, True)


class OffloadOpenAPIProvider(OpenAPIProvider):
    """quart-schema's provider plus the answers, headers and refinements of the routes.

    It documents every route of the app (the standalone service's document), Offload's own
    included although they are hidden from other providers; see :class:`OffloadOnlyProvider`.
    """

    def generate_rules(self) -> Iterable[Rule]:
        for rule in self._app.url_map.iter_rules():
            view = self._app.view_functions[rule.endpoint]
            if rule.websocket or rule.endpoint.partition(".")[0] in DOCS_BLUEPRINTS:
                continue
            if is_offload_endpoint(rule.endpoint) or not getattr(
                    view, QUART_SCHEMA_HIDDEN_ATTRIBUTE, False):
                yield rule

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        extra: list[Answer] = getattr(view, ANSWERS, [])
        refinement: Refine | None = getattr(view, REFINE, None)
        offload: Offload | None = self._app.extensions.get("offload")
        for path_item in paths.values():
            for method, operation in list(path_item.items()):
                operation = copy.deepcopy(operation)
                path_item[method] = operation
                # Status keys as strings, as the document will have them in JSON.
                responses = {str(k): v for k, v in operation["responses"].items()}
                operation["responses"] = responses
                for answer in extra:
                    _apply(responses, answer)
                    if answer.links:
                        responses[str(answer.status)]["links"] = {
                            name: self._link(rule, link) for name, link in answer.links.items()}
                if len(path_item) > 1:  # one view, several methods: an id for each
                    operation["operationId"] = camel_case(f"{method}_{operation['operationId']}")
                if not responses:
                    # A route of the host app that documents nothing: say so, validly.
                    responses["default"] = {"description": "Not documented."}
                if refinement is not None and offload is not None:
                    refinement(operation, offload)
        return paths, components

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str:
        """The id quart-schema's ``operation_id`` decorator gave the view, as it is, else the
        view's name in camelCase (``get_task``: ``getTask``): what a generated client's
        functions are named after, so no HTTP method in front (quart-schema's default)."""
        explicit: str | None = getattr(func, QUART_SCHEMA_OPERATION_ID_ATTRIBUTE, None)
        return explicit if explicit is not None else camel_case(func.__name__)

    def build_response_object(self, model: type[Any], headers_model: type[Any] | None
                              ) -> tuple[dict[str, Any], dict[str, Any]]:
        """As quart-schema's, with the model's schema a component that the answer refers
        to, not a copy per answer (one model per type in a generated client)."""
        response, definitions = super().build_response_object(model, headers_model)
        body = response["content"]["application/json"]
        name = body["schema"].get("title")
        if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9._-]+", name):
            definitions[name] = body["schema"]
            body["schema"] = {"$ref": f"#/components/schemas/{name}"}
        return response, definitions

    def _link(self, rule: Rule, link: Link) -> Schema:
        blueprint, _, _ = rule.endpoint.rpartition(".")
        target = self._app.view_functions[f"{blueprint}.{link.view}" if blueprint else link.view]
        return {"operationId": self.operation_id(link.method, "", target),
                "parameters": dict(link.parameters)}

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        schemas = document["components"]["schemas"]
        if "TaskOut" not in schemas:  # what event streams refer to
            task = model_schema(TaskOut, schema_mode="serialization",
                                preference=self._app.config["QUART_SCHEMA_CONVERSION_PREFERENCE"])
            schemas.update(task.pop("$defs", {}))
            schemas["TaskOut"] = task
        offload: Offload | None = self._app.extensions.get("offload")
        if offload is not None:
            schemas.pop("SubmitBody", None)  # what quart-schema made of it: see Submission
            schemas.update(submission_components(
                list(offload.service.registry), offload.service.settings.max_delay))
            if offload.auth.enabled:
                declare_bearer_tokens(document)
        return document


def camel_case(name: str) -> str:
    """``list_tasks`` -> ``listTasks``."""
    first, *rest = [part for part in name.split("_") if part] or [name]
    return first[:1].lower() + first[1:] + "".join(p[:1].upper() + p[1:] for p in rest)


BEARER = "bearerAuth"


def declare_bearer_tokens(document: Schema) -> None:
    """The bearer scheme, required by every operation that answers 401 without a token (all
    but ``/healthz``, ``/readyz``, the page and the document), so that a client generator
    and Swagger UI's "Authorize" know to send ``Authorization: Bearer <token>``."""
    document["components"]["securitySchemes"] = {BEARER: {
        "type": "http", "scheme": "bearer",
        "description": "One of the tokens of OFFLOAD_API_TOKENS."}}
    for path_item in document["paths"].values():
        for operation in path_item.values():
            if "401" in operation.get("responses", {}):
                operation["security"] = [{BEARER: []}]


def _apply(responses: dict[str, Any], answer: Answer) -> None:
    response = responses.setdefault(str(answer.status), {"description": answer.description})
    if answer.description:
        response["description"] = answer.description
    if answer.content_type == PROBLEM_JSON:
        body = response.pop("content", {}).get("application/json", {})
        response["content"] = {PROBLEM_JSON: body}
        response["description"] = response.get("description") or "RFC 9457 problem details."
        headers = PROBLEM_HEADERS.get(answer.status, {})
    elif answer.content_type is not None:
        response["content"] = {answer.content_type: {"schema": answer.schema or {}}}
        headers = {}
    else:
        if answer.empty:
            response.pop("content", None)
        headers = {}
    headers = {**headers, **answer.headers}
    if headers:
        response.setdefault("headers", {}).update(copy.deepcopy(headers))


# -- refinements that depend on the service ---------------------------------------------------

def _parameter(operation: Schema, name: str) -> Schema:
    found: Schema = next(p for p in operation["parameters"] if p["name"] == name)
    return found


def _number_schema(parameter: Schema) -> Schema:
    schema: Schema = parameter["schema"]
    for option in schema.get("anyOf", []):
        if option.get("type") in ("number", "integer"):
            return dict(option)
    return schema


def refine_task_id(operation: Schema, offload: Offload) -> None:
    """A task id is any path segment but ``batch``; an unknown one is a 404."""
    parameter = _parameter(operation, "task_id")
    parameter["description"] = ("The task's id, as the submission returned it. `batch` is "
                                "not one: /tasks/batch is the batch route (POST only, 405).")
    parameter["schema"] = {"type": "string", "minLength": 1, "not": {"const": "batch"}}


def refine_wait(operation: Schema, offload: Offload) -> None:
    """``wait``'s upper bound is ``OFFLOAD_MAX_WAIT``."""
    parameter = _parameter(operation, "wait")
    number = _number_schema(parameter)
    number["maximum"] = offload.service.settings.max_wait
    parameter["schema"] = number


def refine_list(operation: Schema, offload: Offload) -> None:
    """``limit``'s upper bound is ``OFFLOAD_MAX_PAGE``; ``status`` repeats."""
    limit = _parameter(operation, "limit")
    limit["schema"] = {**limit["schema"], "maximum": offload.service.settings.max_page}
    status = _parameter(operation, "status")
    status.update(style="form", explode=True)
    for name in ("name", "cursor"):  # "absent", not "null": a query string has no null
        parameter = _parameter(operation, name)
        parameter["schema"] = next(
            (o for o in parameter["schema"].get("anyOf", []) if o.get("type") == "string"),
            parameter["schema"])


def refine_submit(operation: Schema, offload: Offload) -> None:
    """One submission: a body of one of the registered task types; an ``Idempotency-Key``."""
    operation["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Submission"}}}}
    operation["parameters"].append({
        "name": "Idempotency-Key", "in": "header", "required": False,
        "description": "Makes a retried submission safe: the same key and an equal body "
                       "return the original task (200). 1 to 255 visible ASCII characters "
                       "(inner spaces allowed).",
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    })


def refine_batch(operation: Schema, offload: Offload) -> None:
    """Up to ``OFFLOAD_MAX_BATCH`` submissions."""
    operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["tasks"],
        "properties": {"tasks": {
            "type": "array", "minItems": 1, "maxItems": offload.service.settings.max_batch,
            "items": {"$ref": "#/components/schemas/Submission"}}},
    }}}}

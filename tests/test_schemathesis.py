"""Schemathesis against the service's own ``/openapi.json``.

Every operation of the document gets generated requests, valid ones and invalid ones
(every generation mode), and every answer goes through all of schemathesis' checks: no 5xx,
status code, content type, headers and body as documented, invalid input rejected with a
4xx, valid input accepted, the ``Allow`` header of 405s and OPTIONS.

In process: the standalone app (the demo tasks, as ``make run`` serves them) over ASGI, its
lifespan started by schemathesis on the first request and ended after each operation's test;
a fresh app per operation, since a stopped task service does not start again. Bounded and
seeded: ``MAX_EXAMPLES`` per operation, derandomized, the same cases on every run.

What keeps holding endpoints short: ``OFFLOAD_MAX_WAIT=1`` (the document says so: ``wait``'s
maximum comes from the setting), ``OFFLOAD_SSE_KEEPALIVE=0.5``, and STREAM_TIMEOUT, after
which an event stream of a task still running is cut (schemathesis checks the events it
got). ``GET /process`` starts the 10 s ``long_task``; each app's shutdown (grace 0.1 s)
interrupts it.

Two things the schema cannot say are supplied from the service: a valid ``cursor`` is one it
issued, and an ``Idempotency-Key`` is a first use (see the two helpers below).

The document's ``Submission`` (the body of ``POST /tasks`` and of each batch item) is one
object that client generators can model: a task type's name, ``args``, ``kwargs``, options.
Which arguments each type takes it says apart, in ``<Name>Parameters``; a body that fits
``Submission`` but not its type's parameters is a documented 422. So on the served document
every check runs but "valid input is accepted" for those two operations, and that one runs
on an exact variant of the document (:func:`exact_document`: each type's name with its
``<Name>Parameters`` as ``kwargs``), where schema-valid means the service must accept it.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from quart import Quart
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from service.app import create_app
from service.settings import DEMO_MODULE
from service.web.openapi_submission import parameters_component_name

from .conftest import settings

MAX_EXAMPLES = 25
WORKFLOWS = 20  # stateful scenarios, each up to WORKFLOW_STEPS calls along the links
WORKFLOW_STEPS = 6
REQUEST_TIMEOUT = 2  # seconds: any answer but an event stream's comes sooner
STREAM_TIMEOUT = 0.5  # seconds an event stream is read before it is cut (the events so far
                      # are checked); a stream of a task still running would go on for long


class _DropCutStreamNoise(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for a response sent after its
    client left (Quart's, when an event stream is cut at STREAM_TIMEOUT).

    Not only noise: CPython 3.11 draws a traceback's ``^^^`` markers by parsing source with
    ``ast``, whose recursion counter is shared by threads, and that record is formatted
    wherever the orphaned task is collected (the ASGI client's thread, say) while werkzeug
    may be compiling the next app's routes with ``ast`` in this one: a ``SystemError`` in
    either (seen once in CI).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, ValueError) and "closed file" in str(error))


@pytest.fixture(autouse=True, scope="module")
def _quiet_cut_streams() -> Iterator[None]:
    noise = _DropCutStreamNoise()
    logging.getLogger("asyncio").addFilter(noise)
    yield
    logging.getLogger("asyncio").removeFilter(noise)


def make_app() -> Quart:
    return create_app(settings(task_modules=(DEMO_MODULE,), max_wait=1.0, sse_keepalive=0.5,
                               shutdown_grace=0.1))


def _openapi_document() -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        response = await make_app().test_client().get("/openapi.json")
        assert response.status_code == 200
        document: dict[str, Any] = await response.get_json()
        return document
    return asyncio.run(fetch())


SUBMISSIONS = {("POST", "/tasks"), ("POST", "/tasks/batch")}


def exact_document(document: dict[str, Any]) -> dict[str, Any]:
    """The served document with ``Submission`` one variant per task type: its name, and as
    ``kwargs`` its ``<Name>Parameters`` component (every demo task takes its arguments by
    keyword), plus the options; so that a body valid here is one the service accepts.
    ``depends_on`` is left out: like a cursor, a valid id is one the service issued
    (tests/web/test_depends_on.py has its own tests)."""
    exact = copy.deepcopy(document)
    schemas = exact["components"]["schemas"]
    submission = schemas["Submission"]
    options = {k: v for k, v in submission["properties"].items()
               if k not in ("name", "args", "kwargs", "depends_on")}
    variants = []
    for name in submission["properties"]["name"]["enum"]:
        parameters = parameters_component_name(name)
        variants.append({
            "type": "object", "additionalProperties": False,
            "required": ["name", "kwargs"] if schemas[parameters].get("required") else ["name"],
            "properties": {"name": {"const": name},
                           "kwargs": {"$ref": f"#/components/schemas/{parameters}"}, **options},
        })
    schemas["Submission"] = {"oneOf": variants}
    return exact


def _configured(loaded: OpenApiSchema) -> OpenApiSchema:
    loaded.config.generation.update(modes=list(GenerationMode), max_examples=MAX_EXAMPLES,
                                    deterministic=True)
    loaded.config.update(request_timeout=REQUEST_TIMEOUT)
    return loaded


DOCUMENT = _openapi_document()
schema = _configured(schemathesis.openapi.from_dict(DOCUMENT))
exact_submissions = _configured(schemathesis.openapi.from_dict(exact_document(DOCUMENT))
                                ).include(operation_id=["submitTask", "submitBatch"])


def excluded_checks(case: schemathesis.Case) -> list[CheckFunction]:
    """On the served document, a submission that fits ``Submission`` may still be a 422
    (an argument its type does not take): checked on :data:`exact_submissions` instead."""
    return [positive_data_acceptance] if (case.method, case.path) in SUBMISSIONS else []


@pytest.fixture(scope="module", autouse=True)
def _end_what_cut_streams_left() -> Iterator[None]:
    """An event stream cut at STREAM_TIMEOUT leaves Quart's reader of that request waiting
    in schemathesis' event loop; end those at the end, rather than have the interpreter
    destroy them at exit ("Task was destroyed but it is pending!")."""
    yield
    portal = getattr(asgi, "_PORTAL", None)
    if portal is None:
        return

    async def cancel_the_rest() -> None:
        left = [task for task in asyncio.all_tasks()
                if getattr(task.get_coro(), "__qualname__", "").startswith("ASGIHTTPConnection.")]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1)

    portal.call(cancel_the_rest)
    gc.collect()  # requests that ended after their client left, while the filter is on


@dataclass
class Service:
    """The app under test, and a list cursor it issued (made on first use)."""

    app: Quart = field(default_factory=make_app)
    _cursor: str | None = None
    keys_used: int = 0

    def issued_cursor(self) -> str:
        if self._cursor is None:
            with asgi.get_client(self.app) as http:
                for i in range(2):
                    response = http.post("/tasks", json={"name": "add", "args": [i, i]})
                    assert response.status_code == 202, response.text
                page = http.get("/tasks", params={"limit": 1}).json()
            self._cursor = page["next_cursor"]
            assert self._cursor
        return self._cursor


@pytest.fixture
def service() -> Iterator[Service]:
    fresh = Service()
    yield fresh
    asgi.shutdown_lifespans()


def _use_an_issued_cursor(case: schemathesis.Case, service: Service) -> None:
    """A cursor is opaque: the only valid ones are those the service issued (the document
    says so; a schema cannot). A generated ``cursor`` in an otherwise valid query is replaced
    by an issued one, so that "valid input is accepted" means something for it; invalid
    queries keep theirs, and forged cursors have their own tests (tests/web/test_list.py)."""
    negative = case.meta is not None and case.meta.is_negative_at(ParameterLocation.QUERY)
    if case.method == "GET" and case.path == "/tasks" and "cursor" in (case.query or {}) \
            and not negative:
        assert case.query is not None
        case.query["cursor"] = service.issued_cursor()


def _fresh_idempotency_key(case: schemathesis.Case, service: Service) -> None:
    """An Idempotency-Key names one submission: the same key with another body is a 422 by
    contract (tests/web/test_idempotency.py). The examples of one operation share an app, so
    a valid generated key is made unique (a numbered prefix) to stay a first use."""
    negative = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    key = (case.headers or {}).get("Idempotency-Key")
    if key is None or negative:
        return
    assert case.headers is not None
    service.keys_used += 1
    prefix = f"{service.keys_used}-"
    case.headers["Idempotency-Key"] = prefix + key[-(255 - len(prefix)):]


def call_kwargs(case: schemathesis.Case, service: Service) -> dict[str, Any]:
    if case.path.endswith("/events"):
        return {"app": service.app, "timeout": STREAM_TIMEOUT}
    return {"app": service.app}


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, service: Service
                                              ) -> None:
    _use_an_issued_cursor(case, service)
    _fresh_idempotency_key(case, service)
    case.call_and_validate(excluded_checks=excluded_checks(case), **call_kwargs(case, service))


@exact_submissions.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_submissions_that_fit_their_types_parameters_are_accepted(
    case: schemathesis.Case, service: Service,
) -> None:
    _fresh_idempotency_key(case, service)
    case.call_and_validate(**call_kwargs(case, service))


def test_workflows_along_the_links_conform() -> None:
    """Stateful: calls chained along the document's links (submit, then get, wait, follow
    events, cancel, delete the task it made; list, then act on a listed task), so that the
    answers about real tasks are checked too, not only 404s for generated ids. A fresh app
    per scenario: what a scenario sees depends only on its own calls."""

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.service = Service()

        def teardown(self) -> None:
            asgi.shutdown_lifespans()

        def before_call(self, case: schemathesis.Case) -> None:
            _use_an_issued_cursor(case, self.service)
            _fresh_idempotency_key(case, self.service)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return call_kwargs(case, self.service)

        def validate_response(self, response: Any, case: schemathesis.Case,
                              additional_checks: list[CheckFunction] | None = None,
                              **kwargs: Any) -> None:
            case.validate_response(response, additional_checks=additional_checks,
                                   excluded_checks=excluded_checks(case),
                                   transport_kwargs=kwargs or None, recorder=self.recorder)

    Workflow.run(settings=hypothesis.settings(
        max_examples=WORKFLOWS, stateful_step_count=WORKFLOW_STEPS, derandomize=True,
        deadline=None))

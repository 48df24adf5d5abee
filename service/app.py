"""The standalone service: ``hypercorn service.app:app`` (what ``make run`` starts)."""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from quart import Quart, Response
from quart.typing import ResponseTypes
from quart_schema import QuartSchema, document_response

from . import logs
from .models import Submission
from .settings import DEMO_MODULE, Settings
from .web import Offload
from .web.api import LOCATION, json_response
from .web.docs import INFO, docs_page
from .web.openapi import RETRY_AFTER, Answer, OffloadOpenAPIProvider, answers, problems
from .web.problems import register_app_handlers
from .workers import report_refusal


class ProcessOut(BaseModel):
    """What the tutorial's route answers: the task's id and status."""

    task_id: str
    status: str


def create_app(settings: Settings | None = None) -> Quart:
    """The API, the demo tasks (or those of ``OFFLOAD_TASK_MODULES``) and the seed's route."""
    app = Quart("offload")
    settings = settings or Settings.load(app.config)
    if not settings.task_modules:
        settings = dataclasses.replace(settings, task_modules=(DEMO_MODULE,))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    # The app is Offload's own: the API at the root (as the SPEC says), and one document
    # of all its routes at /openapi.json and /docs, its own route included.
    offload = Offload(app, settings=settings, url_prefix="", openapi=False)
    plain = app.make_response
    QuartSchema(app, info=INFO, openapi_provider_class=OffloadOpenAPIProvider,
                swagger_ui_path=None, redoc_ui_path=None, scalar_ui_path=None)
    app.register_blueprint(docs_page)  # Offload's /docs: its own files, not a CDN's
    _skip_conversion_of_responses(app, plain)
    register_app_handlers(app)

    @app.get("/process")
    @document_response(ProcessOut, 202)
    @answers(Answer(202, headers={"Location": LOCATION, "Retry-After": RETRY_AFTER}))
    @problems(401, 429, 503)
    async def process() -> Response:
        """The tutorial's route: start the 10-second job and answer at once."""
        owner = offload.current_owner()
        record, _ = await offload.service.submit(Submission("long_task"), owner=owner)
        return json_response({"task_id": record.id, "status": record.status.value}, 202,
                             {"Location": f"/tasks/{record.id}",
                              "Retry-After": str(settings.poll_after)})

    return app


def _skip_conversion_of_responses(
        app: Quart, plain: Callable[[Any], Awaitable[ResponseTypes]]) -> None:
    """A view's ready :class:`Response` goes straight to Quart's ``make_response``.

    quart-schema wraps ``make_response`` to turn returned models into JSON; for a Response
    (what every Offload view returns) its conversion gives back the same object, after
    some ten config and type look-ups on each request. Anything else still goes through it.
    Only on this app, which is Offload's own: an embedding app's is never touched.
    """
    converting = app.make_response

    async def make_response(result: Any) -> ResponseTypes:
        if isinstance(result, Response):
            return await plain(result)
        return await converting(result)

    app.make_response = make_response  # type: ignore[method-assign]


def _standalone() -> Quart:
    try:
        settings = Settings.load()
        if not logging.getLogger().handlers:  # an embedding program's own logging setup wins
            logs.configure(settings.log_format, settings.log_level)
        app = create_app(settings)
    except BaseException as exc:  # a bad setting or task module: the server must exit non-zero
        report_refusal(exc)
        raise
    app.before_serving(_freeze_startup_objects)  # after Offload's own start: registered later
    return app


async def _freeze_startup_objects() -> None:
    """Move what start-up made (modules, routes, schemas, the service: some 60,000 objects
    that live as long as the process) out of the garbage collector's generations.

    Each full collection walks every tracked object; under load those come every few
    thousand requests, and without this each one would walk start-up's objects again (a
    third of the collector's time under ``POST /tasks``). Only the standalone server does
    this: an embedding program owns its process's collector.
    """
    gc.collect()  # start-up's garbage goes now, not frozen with the rest
    gc.freeze()


app = _standalone()

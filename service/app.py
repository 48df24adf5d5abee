"""The standalone service: ``hypercorn service.app:app`` (what ``make run`` starts)."""

from __future__ import annotations

import dataclasses
import logging

from pydantic import BaseModel
from quart import Quart, Response
from quart_schema import document_response

from . import logs
from .models import Submission
from .settings import DEMO_MODULE, Settings
from .web import Offload
from .web.api import LOCATION, json_response
from .web.openapi import RETRY_AFTER, Answer, answers, problems
from .web.problems import register_app_handlers


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
    offload = Offload(app, settings=settings)
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


def _standalone() -> Quart:
    settings = Settings.load()
    if not logging.getLogger().handlers:  # an embedding program's own logging setup wins
        logs.configure(settings.log_format, settings.log_level)
    return create_app(settings)


app = _standalone()

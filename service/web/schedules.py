"""``GET /schedules`` and ``POST /schedules/{name}/pause`` / ``resume`` (docs/schedules.md).

Importing this module adds the routes to the API blueprint. Pausing is deployment-wide:
the state is in the store, and every process reads it at each tick.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field
from quart import Response
from quart_schema import document_response

from ..models import JSON
from ..scheduler import ScheduleNotFound
from ..schedules import NAME_PATTERN
from .api import api, json_response, offload
from .openapi import Schema, problems, refine
from .problems import problem

StatusName = Literal["queued", "scheduled", "waiting", "running", "succeeded", "failed",
                     "cancelled"]


class ScheduleOut(BaseModel):
    """A periodic schedule and its state, shared by every process of the deployment."""

    name: str
    task: str = Field(description="The task type each tick submits.")
    cron: str | None = Field(default=None, description="Five-field cron expression "
                             "(absent for an interval schedule).")
    every: float | None = Field(default=None, description="Seconds between ticks (absent "
                                "for a cron schedule).")
    timezone: str = Field(description="The IANA time zone of the cron expression.")
    args: list[Any]
    kwargs: dict[str, Any]
    missed: Literal["skip", "latest"] = Field(description="What a start does with ticks "
                                              "missed while nothing ran.")
    overlap: bool = Field(description="Whether a tick starts while an earlier tick's task "
                          "is still queued or running.")
    next_run_at: str | None = Field(description="The next tick (RFC 3339, UTC); null "
                                    "while paused.")
    last_run_at: str | None = Field(description="The tick of the last task submitted.")
    last_task_id: str | None
    last_status: StatusName | None = Field(description="That task's status; null if none "
                                           "or its record is gone.")
    paused: bool


class ScheduleListOut(BaseModel):
    items: list[ScheduleOut]


def _document_name(operation: Schema, _offload: object) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "name" and parameter.get("in") == "path":
            parameter["description"] = "The schedule's name."
            parameter["schema"] = {"type": "string", "pattern": f"^{NAME_PATTERN}$"}


@api.get("/schedules")
@document_response(ScheduleListOut, 200)
@problems(401)
async def list_schedules() -> Response:
    """Every periodic schedule: its expression, next run, last task and whether it is
    paused."""
    scheduler = offload().service.scheduler
    items = [await scheduler.describe(schedule.name) for schedule in scheduler]
    return json_response({"items": items})


@api.post("/schedules/<name>/pause")
@document_response(ScheduleOut, 200)
@refine(_document_name)
@problems(401, 404)
async def pause_schedule(name: str) -> Response:
    """Stop a schedule's ticks in the whole deployment, until it is resumed."""
    return await _set_paused(name, True)


@api.post("/schedules/<name>/resume")
@document_response(ScheduleOut, 200)
@refine(_document_name)
@problems(401, 404)
async def resume_schedule(name: str) -> Response:
    """Let a paused schedule tick again, from its next tick (missed ones are not run)."""
    return await _set_paused(name, False)


async def _set_paused(name: str, paused: bool) -> Response:
    scheduler = offload().service.scheduler
    try:
        state = await scheduler.set_paused(name, paused)
    except ScheduleNotFound:
        shown = f" named {name!r}" if re.fullmatch(NAME_PATTERN, name) else " by this name"
        return problem(404, f"no schedule{shown}", code="schedule-not-found")
    body: JSON = await scheduler.describe(name, state)
    return json_response(body)

"""Endpoints that stay open without a token: liveness, readiness and the dashboard page."""

from __future__ import annotations

from quart import Blueprint, Response, current_app
from quart_schema import document_response, operation_id

from .. import jsonutil
from .dashboard import dashboard_page
from .openapi import Answer, answers, problems
from .problems import problem, register_handlers
from .schemas import HealthOut

public = Blueprint("offload_public", __name__)
register_handlers(public)

@public.get("/healthz")
@document_response(HealthOut, 200)
@operation_id("checkLiveness")
async def healthz() -> Response:
    """Liveness: the process answers."""
    return Response(jsonutil.dumps({"status": "ok"}), 200, content_type="application/json")


@public.get("/readyz")
@document_response(HealthOut, 200)
@problems(503)
@operation_id("checkReadiness")
async def readyz() -> Response:
    """Readiness: 503 while starting or draining."""
    extension = current_app.extensions["offload"]
    if not extension.service.started:
        why = extension.unavailable or "the task service is starting or shutting down"
        return problem(503, why, headers={"Retry-After": "1"})
    return Response(jsonutil.dumps({"status": "ready"}), 200, content_type="application/json")


@public.get("/")
@answers(Answer(200, "text/html", {"type": "string"}, "The dashboard page."))
async def dashboard() -> Response:
    """The dashboard: a live page of the tasks, their progress and actions."""
    return dashboard_page()

"""Endpoints that stay open without a token: liveness, readiness and the dashboard page."""

from __future__ import annotations

from quart import Blueprint, Response, current_app
from quart_schema import document_response, operation_id

from .. import jsonutil
from .openapi import Answer, answers, problems
from .problems import problem, register_handlers
from .schemas import HealthOut

public = Blueprint("offload_public", __name__)
register_handlers(public)

DASHBOARD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Offload</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>Offload</h1>
<p>Background tasks for this service. The dashboard is coming; meanwhile:</p>
<ul><li><a href="docs">API documentation</a> (<a href="openapi.json">OpenAPI</a>)</li>
<li><code>GET tasks</code>, <code>GET stats</code>, <code>GET task-types</code></li></ul>
</body></html>
"""


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
    """The dashboard page (a placeholder for now)."""
    return Response(DASHBOARD, 200, content_type="text/html; charset=utf-8")

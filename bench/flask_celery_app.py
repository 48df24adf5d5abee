"""The seed's good pattern, web side: Flask under gunicorn, ``.delay()`` to Celery.

Served by ``gunicorn bench.flask_celery_app:app`` (sync workers). It speaks the same shape as
Offload's API for the routes the scenarios use, so one client drives both:

- ``POST /tasks`` ``{"name", "args", "kwargs"}`` -> ``task.delay(...)`` -> 202 ``{"id", ...}``
- ``POST /tasks/batch`` ``{"tasks": [...]}`` -> one ``.delay()`` per item -> 202 ``{"items"}``
- ``GET /tasks/<id>?wait=N`` -> the result (polls the result backend up to N s)
- ``POST /tasks/results`` ``{"ids": [...], "wait": N}`` -> ``ResultSet.join_native``
- ``GET /process`` -> the tutorial's route (``long_task.delay()``), ``GET /healthz``
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult, ResultSet
from flask import Flask, request

from bench.celery_app import app as celery_app

app = Flask("flask-celery")
STATUS = {"PENDING": "queued", "RECEIVED": "queued", "STARTED": "running",
          "RETRY": "scheduled", "SUCCESS": "succeeded", "FAILURE": "failed",
          "REVOKED": "cancelled"}
MAX_WAIT = 60.0


def _delay(item: dict[str, Any]) -> AsyncResult:
    task = celery_app.tasks[item["name"]]
    return task.delay(*item.get("args", []), **item.get("kwargs", {}))


def _task(result: AsyncResult) -> dict[str, Any]:
    state = result.state
    value = result.result if state == "SUCCESS" else None
    return {"id": result.id, "status": STATUS.get(state, state.lower()), "result": value}


@app.post("/tasks")
def submit() -> tuple[dict[str, Any], int, dict[str, str]]:
    result = _delay(request.get_json())
    return ({"id": result.id, "status": "queued"}, 202,
            {"Location": f"/tasks/{result.id}", "Retry-After": "1"})


@app.post("/tasks/batch")
def submit_batch() -> tuple[dict[str, Any], int]:
    items = [_delay(item) for item in request.get_json()["tasks"]]
    return {"items": [{"id": r.id, "status": "queued"} for r in items]}, 202


@app.get("/tasks/<task_id>")
def get_task(task_id: str) -> dict[str, Any]:
    result = AsyncResult(task_id, app=celery_app)
    wait = min(float(request.args.get("wait", 0)), MAX_WAIT)
    end = time.monotonic() + wait
    while not result.ready() and time.monotonic() < end:  # bounded by ?wait
        time.sleep(0.005)
    return _task(result)


@app.post("/tasks/results")
def results() -> dict[str, Any]:
    body = request.get_json()
    found = ResultSet([AsyncResult(i, app=celery_app) for i in body["ids"]], app=celery_app)
    wait = min(float(body.get("wait", 0)), MAX_WAIT)
    if wait > 0:
        with contextlib.suppress(CeleryTimeout):  # then report them as they are
            found.join_native(timeout=wait, propagate=False)
    return {"items": [_task(r) for r in found.results]}


@app.get("/process")
def process() -> tuple[dict[str, Any], int, dict[str, str]]:
    result = celery_app.tasks["long_task"].delay()
    return ({"task_id": result.id, "status": "queued"}, 202,
            {"Location": f"/tasks/{result.id}"})


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}

"""The ceiling: a bare Quart app on the same Hypercorn config, answering a trivial JSON POST.

Served like Offload: ``hypercorn --config hypercorn.toml bench.baseline_app:app``. It reads
the JSON body and answers 202 with a small JSON object, as ``POST /tasks`` does, and nothing
else: no validation, no records, no task.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, request

app = Quart("baseline")


@app.post("/tasks")
async def submit() -> tuple[dict[str, Any], int]:
    body = await request.get_json()
    return {"id": "0", "name": body["name"], "status": "queued"}, 202


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}

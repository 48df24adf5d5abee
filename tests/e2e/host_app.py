"""A host app that embeds Offload as the README shows, for the real server
(``python -m service --app tests.e2e.host_app:app``): its own ``/`` and JSON route, and
Offload's API under ``/offload``. Settings come from the ``OFFLOAD_*`` environment."""

from __future__ import annotations

from quart import Quart, jsonify, request
from quart.typing import ResponseReturnValue

from service import Offload

app = Quart("host")
offload = Offload(app)


@offload.task
async def total(a: int, b: int) -> int:
    return a + b


@app.get("/")
async def home() -> str:
    return "the host's home"


@app.post("/echo")
async def echo() -> ResponseReturnValue:
    return jsonify({"got": await request.get_json()})


@app.post("/sum")
async def start_sum() -> ResponseReturnValue:
    data = await request.get_json()
    task = await total.submit(data["a"], data["b"])
    return {"task_id": task.id}, 202

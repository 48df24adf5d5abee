"""The seed's bad pattern: Flask under gunicorn, the request handler runs the slow job itself.

Served by ``gunicorn bench.flask_sync_app:app`` (sync workers). ``GET /process?seconds=N``
sleeps N seconds (the seed's job, ``time.sleep(10)``, by default) before it answers, so each
such request holds a worker; ``GET /healthz`` is the liveness route measured while they do.
"""

from __future__ import annotations

import time

from flask import Flask, request

app = Flask("flask-sync")
MAX_SECONDS = 60.0


@app.get("/process")
def process() -> dict[str, str]:
    seconds = min(float(request.args.get("seconds", 10)), MAX_SECONDS)
    time.sleep(seconds)  # the whole job, inside the request
    return {"status": "done"}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}

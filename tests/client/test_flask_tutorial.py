"""The tutorial's Flask app (docs/client.md shows this very file): a real Flask app, run
through Flask's test client, submitting to a real Offload server on a loopback port. No
Celery, no Redis."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from service.client import OffloadClient
from service.models import Status

from ..e2e.server import REPO, Server
from .conftest import WAIT

APP_MODULE = "tests.client.flask_app"
APP_SOURCE = Path(__file__).with_name("flask_app.py")
DOCS = [REPO / "docs" / "client.md", REPO / "README.md"]  # every document showing the app
BLOCK = re.compile(r"^```python\n(# app\.py.*?)^```$", re.DOTALL | re.MULTILINE)


@pytest.fixture
def flask_app(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The app module imported afresh, with OFFLOAD_URL naming the test's server."""
    monkeypatch.setenv("OFFLOAD_URL", server.base_url)
    sys.modules.pop(APP_MODULE, None)
    module = importlib.import_module(APP_MODULE)
    try:
        yield module
    finally:
        module.offload.close()
        sys.modules.pop(APP_MODULE, None)


def test_process_answers_at_once_and_the_service_runs_the_task(
    flask_app: ModuleType, server: Server
) -> None:
    http = flask_app.app.test_client()
    response = http.get("/process")
    assert response.status_code == 202
    body = response.get_json()
    assert set(body) == {"task_id", "status"}
    # long_task takes 10 s: an answer before its end is an answer that did not wait for it
    assert body["status"] in ("queued", "running")

    with OffloadClient(server.base_url) as offload:
        task = offload.get(body["task_id"])
        assert task.record.name == "long_task"
        assert not task.ready()

        shown = http.get(f"/tasks/{task.id}").get_json()
        assert shown == {"task_id": task.id, "status": shown["status"], "result": None}
        assert shown["status"] in ("queued", "running")

        task.cancel()  # no need to wait ten seconds: the rest of the story is the client's
        assert task.wait(WAIT).status is Status.CANCELLED
    assert http.get(f"/tasks/{task.id}").get_json()["status"] == "cancelled"
    missing = http.get("/tasks/" + "C" * 24)
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "no such task"}


def test_the_documents_show_this_very_app() -> None:
    source = APP_SOURCE.read_text()
    for document in DOCS:
        blocks = BLOCK.findall(document.read_text())
        assert blocks == [source], f"{document.name} must show {APP_SOURCE.name} verbatim"

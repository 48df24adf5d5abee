"""Structured logs: task id and name on every line about a task, JSON when asked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from service import TaskService, logs
from service.app import create_app
from service.models import Submission

from .conftest import settings


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Everything logged while the test runs, as the JSON handler writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {name: logging.getLogger(name).level for name in ("offload", "tests")}
    logging.getLogger("offload").setLevel(logging.DEBUG)
    logging.getLogger("tests").setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def run(*submissions: Submission) -> None:
    svc = TaskService(settings())
    svc.register_module("tests.log_tasks")
    await svc.start()
    try:
        for submission in submissions:
            record, _ = await svc.submit(submission)
            await svc.wait(record.id, timeout=10)
    finally:
        await svc.stop(grace=1)


async def test_a_task_s_own_log_lines_carry_its_id_and_name(json_lines: io.StringIO) -> None:
    await run(Submission("chatty_thread", ["hi"]), Submission("chatty_async", ["ho"]))
    said = [e for e in entries(json_lines) if e["logger"] == "tests.log_tasks"]
    assert [e["message"] for e in said] == ["thread says hi", "async says ho"]
    assert [e["task_name"] for e in said] == ["chatty_thread", "chatty_async"]
    assert all(isinstance(e["task_id"], str) and len(e["task_id"]) == 24 for e in said)


async def test_the_path_of_a_task_is_logged_as_events(json_lines: io.StringIO) -> None:
    await run(Submission("always_fails"))
    events = [e for e in entries(json_lines) if e.get("task_name") == "always_fails"]
    assert [e["event"] for e in events] == [
        "task_submitted", "task_started", "task_retry", "task_started", "task_finished"]
    assert len({e["task_id"] for e in events}) == 1
    final = events[-1]
    assert final["status"] == "failed"
    assert final["error_type"] == "RuntimeError"
    assert final["attempt"] == 2
    assert final["level"] == "info"


async def test_request_ids_are_echoed_and_logged(json_lines: io.StringIO) -> None:
    app = create_app(settings(api_tokens=("s3cret-token",)))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        headers = {"Authorization": "Bearer s3cret-token", "X-Request-ID": "req-42"}
        response = await client.post("/tasks", json={"name": "add", "args": [1, 2]},
                                     headers=headers)
        assert response.status_code == 202
        assert response.headers["X-Request-ID"] == "req-42"
        made = await client.get("/healthz", headers={"X-Request-ID": "bad id!"})
        assert len(made.headers["X-Request-ID"]) == 16  # a fresh id, not the bad one
    output = json_lines.getvalue()
    assert "s3cret-token" not in output
    submitted = [e for e in entries(json_lines) if e.get("event") == "task_submitted"]
    assert [e["request_id"] for e in submitted] == ["req-42"]
    assert [e["task_name"] for e in submitted] == ["add"]
    logging.getLogger("offload.test").warning("after the request")  # outside any request
    assert "request_id" not in entries(json_lines)[-1]


def test_text_format_appends_fields() -> None:
    record = logging.LogRecord("offload.x", logging.INFO, __file__, 1, "hello", None, None)
    record.task_id = "abc"
    assert logs.TextFormatter().format(record).endswith("hello task_id=abc")


def test_configure_lets_a_task_module_s_info_lines_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("json", "INFO")
    try:
        logging.getLogger("someones.tasks").info("hello from a task module")
        logging.getLogger("someones.tasks").debug("not at INFO")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["hello from a task module"]


def test_an_unknown_log_level_is_a_clear_error() -> None:
    from service.settings import Settings

    with pytest.raises(ValueError, match="OFFLOAD_LOG_LEVEL"):
        Settings(log_level="verbose")

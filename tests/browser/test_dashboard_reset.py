"""The dashboard when its feed cannot resume: the server's resume buffer (two events here)
no longer holds what the page missed, so the stream starts with a `reset` event and the
page reads GET /tasks and GET /stats again, once, and carries on live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.server import Server, finish, start

from .conftest import TASK_MODULES, Watched, loaded
from .proxy import CuttableProxy

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def forgetful(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("forgetful"), name="forgetful",
                   OFFLOAD_TASK_MODULES=TASK_MODULES, OFFLOAD_EVENTS_BUFFER="2",
                   OFFLOAD_SHUTDOWN_GRACE="1")
    try:
        yield server
    finally:
        finish(server)


def run_echo(api: httpx.Client, value: str) -> str:
    response = api.post("/tasks", json={"name": "echo", "args": [value]})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    assert api.get(f"/tasks/{task_id}", params={"wait": 20}).json()["status"] == "succeeded"
    return task_id


def test_a_feed_that_cannot_resume_makes_the_page_read_everything_again(
        forgetful: Server, make_page: Any) -> None:
    proxy = CuttableProxy(forgetful.port)
    try:
        with httpx.Client(base_url=forgetful.base_url, timeout=30) as api:
            watched: Watched = make_page()
            page = watched.page
            page.goto(f"{proxy.base_url}/")
            expect(page.locator("#connection")).to_have_text("Live")
            loaded(page)  # a cut in the middle of the first read would make it read again
            first = run_echo(api, "seen live")
            expect(page.locator(f'tr[data-task-id="{first}"] .badge')).to_have_text("succeeded")

            proxy.cut()
            expect(page.locator("#connection")).not_to_have_text("Live")
            missed = [run_echo(api, f"missed {n}") for n in range(3)]  # 9 events > 2 kept
            proxy.resume()
            for task_id in missed:
                badge = page.locator(f'tr[data-task-id="{task_id}"] .badge')
                expect(badge).to_have_text("succeeded")
            expect(page.locator('#counts [data-status="succeeded"] dd')).to_have_text("4")
            after = run_echo(api, "live again")
            expect(page.locator(f'tr[data-task-id="{after}"] .badge')).to_have_text("succeeded")
    finally:
        proxy.close()

    reads = [url for url in watched.requests if "/tasks?" in url]
    # the first read and one re-read, each the table's page and the chart's finished tasks
    assert len(reads) == 4, reads
    watched.assert_clean(network_errors=True)

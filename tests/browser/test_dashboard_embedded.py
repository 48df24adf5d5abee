"""The dashboard of an app that embeds Offload (tests/e2e/host_app.py): served under the
extension's prefix, every URL it uses relative to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.server import Server, finish

from .conftest import Watched, spawn_embedded

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = spawn_embedded(tmp_path_factory.mktemp("embedded"))
    try:
        yield server
    finally:
        finish(server)


def test_the_dashboard_lives_under_the_prefix(embedded: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = watched.page
    page.goto(f"{embedded.base_url}/offload")  # no trailing slash: redirected to /offload/
    assert page.url == f"{embedded.base_url}/offload/"
    expect(page.locator("#connection")).to_have_text("Live")
    form = page.get_by_role("region", name="Submit a task")
    form.get_by_label("Task type").select_option("total")  # the host app's own task
    form.locator("input[name=a]").fill("2")
    form.locator("input[name=b]").fill("3")
    form.get_by_role("button", name="Submit").click()
    link = form.locator("#submit-result a")
    expect(link).to_be_visible()
    task_id = (link.get_attribute("href") or "").removeprefix("#task/")
    expect(page.locator(f'tr[data-task-id="{task_id}"] .badge')).to_have_text("succeeded")

    link.click()
    expect(page.get_by_role("dialog", name="Task total").locator("pre").nth(2)).to_have_text("5")
    prefix = f"{embedded.base_url}/offload/"
    outside = [url for url in watched.requests if not url.startswith(prefix.rstrip("/"))]
    assert outside == []
    assert f"{prefix}events" in watched.requests
    assert f"{prefix}dashboard/main.js" in watched.requests
    watched.assert_clean()

"""The dashboard with bearer tokens on (OFFLOAD_API_TOKENS): it asks for a token with a form
(never window.prompt), keeps it in sessionStorage (never in a URL), and shows only what that
token owns, live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.server import Server, finish, start

from .conftest import TASK_MODULES, Watched

pytestmark = pytest.mark.e2e
ALICE, BOB = "alice-token-0123456789", "bob-token-9876543210"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("guarded"), name="guarded",
                   OFFLOAD_API_TOKENS=f"{ALICE},{BOB}", OFFLOAD_TASK_MODULES=TASK_MODULES,
                   OFFLOAD_SHUTDOWN_GRACE="1")
    try:
        yield server
    finally:
        finish(server)


def echo_as(server: Server, token: str, value: str) -> str:
    """Submit echo(value) with this token and wait until it has run; its id."""
    with httpx.Client(base_url=server.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as api:
        response = api.post("/tasks", json={"name": "echo", "args": [value]})
        assert response.status_code == 202, response.text
        task_id: str = response.json()["id"]
        done = api.get(f"/tasks/{task_id}", params={"wait": 20}).json()
    assert done["status"] == "succeeded", done
    return task_id


def test_the_page_asks_for_a_token_once_and_shows_only_that_tokens_tasks(
        guarded: Server, make_page: Any) -> None:
    alices = echo_as(guarded, ALICE, "alice's")
    bobs = echo_as(guarded, BOB, "bob's")
    watched: Watched = make_page()
    page = watched.page
    page.goto(f"{guarded.base_url}/")
    prompt = page.get_by_role("dialog", name="API token")
    expect(prompt).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Token required")

    prompt.get_by_label("Token").fill("not-a-token")
    prompt.get_by_role("button", name="Use this token").click()
    expect(prompt.locator("#token-error")).to_contain_text("not accepted")
    prompt.get_by_label("Token").fill(ALICE)
    prompt.get_by_role("button", name="Use this token").click()
    expect(prompt).to_be_hidden()
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator(f'tr[data-task-id="{alices}"]')).to_be_visible()
    assert page.locator(f'tr[data-task-id="{bobs}"]').count() == 0

    # Live, through the feed: Bob's task comes first, so by the time Alice's shows, the
    # stream has passed Bob's (and must not have shown it).
    bobs_later = echo_as(guarded, BOB, "bob's, later")
    alices_later = echo_as(guarded, ALICE, "alice's, later")
    expect(page.locator(f'tr[data-task-id="{alices_later}"] .badge')).to_have_text("succeeded")
    assert page.locator(f'tr[data-task-id="{bobs_later}"]').count() == 0
    expect(page.locator('#counts [data-status="succeeded"] dd')).to_have_text("2")

    assert page.evaluate("sessionStorage.getItem('offload.token')") == ALICE
    assert not [url for url in watched.requests if ALICE in url or "token" in url]
    watched.assert_clean(401)


def test_the_token_lasts_the_browser_session_and_can_be_forgotten(
        guarded: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = watched.page
    page.goto(f"{guarded.base_url}/")
    prompt = page.get_by_role("dialog", name="API token")
    prompt.get_by_label("Token").fill(BOB)
    prompt.get_by_role("button", name="Use this token").click()
    expect(page.locator("#connection")).to_have_text("Live")

    page.reload()
    expect(page.locator("#connection")).to_have_text("Live")
    assert not prompt.is_visible()
    bobs = echo_as(guarded, BOB, "bob's own")
    expect(page.locator(f'tr[data-task-id="{bobs}"]')).to_be_visible()
    page.get_by_role("button", name="Forget token").click()
    expect(prompt).to_be_visible()
    expect(page.locator("#task-rows tr")).to_have_count(0)  # Bob's tasks are gone with him
    assert page.evaluate("sessionStorage.getItem('offload.token')") is None
    watched.assert_clean(401)

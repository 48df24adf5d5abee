"""``/docs`` in Chromium with every other host cut off: Swagger UI, served by Offload itself,
renders the API under the page's Content-Security-Policy (no violation, no error); with
tokens on, "Authorize" takes a bearer token and "Try it out" sends it; under an embedding
app's ``/offload`` too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, Request, Route, expect

from tests.e2e.server import Server, finish, start

from .conftest import TASK_MODULES, Watched, spawn_embedded

pytestmark = pytest.mark.e2e
TOKEN = "docs-page-token-0123456789"


def offline(watched: Watched, server: Server) -> Page:
    """The page, with every request to another origin refused (as with no internet)."""
    page = watched.page

    def only_this_server(route: Route, request: Request) -> None:
        if request.url.startswith(f"{server.base_url}/") or request.url.startswith("data:"):
            route.continue_()
        else:
            route.abort()
    page.route("**/*", only_this_server)
    return page


def assert_rendered_from_here(watched: Watched, server: Server, prefix: str) -> None:
    page = watched.page
    for operation in ("submitTask", "getTask", "listTaskTypes", "checkLiveness"):
        expect(page.locator(f"#operations-default-{operation}")).to_be_visible()
    expect(page.locator(".info .title")).to_contain_text("Offload")
    assert f"{server.base_url}{prefix}/openapi.json" in watched.requests
    assert [url for url in watched.requests if not url.startswith(server.base_url)] == []


def test_the_docs_render_offline_under_their_csp(server: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = offline(watched, server)
    page.goto(f"{server.base_url}/docs")

    assert_rendered_from_here(watched, server, "")
    watched.assert_clean()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start(tmp_path_factory.mktemp("docs"), name="docs", OFFLOAD_API_TOKENS=TOKEN,
                    OFFLOAD_TASK_MODULES=TASK_MODULES, OFFLOAD_SHUTDOWN_GRACE="1")
    try:
        yield running
    finally:
        finish(running)


def test_authorize_takes_a_token_that_try_it_out_sends(guarded: Server,
                                                       make_page: Any) -> None:
    watched: Watched = make_page()
    page = offline(watched, guarded)
    sent: list[str | None] = []
    page.on("request", lambda request: sent.append(request.headers.get("authorization"))
            if request.url == f"{guarded.base_url}/stats" else None)
    page.goto(f"{guarded.base_url}/docs")

    page.locator(".auth-wrapper .authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    expect(dialog).to_contain_text("bearerAuth")
    dialog.get_by_label("Value").fill(TOKEN)
    dialog.get_by_role("button", name="Apply credentials").click()
    dialog.get_by_role("button", name="Close").click()
    stats = page.locator("#operations-default-getStats")
    stats.locator(".opblock-summary").click()
    stats.get_by_role("button", name="Try it out").click()
    stats.get_by_role("button", name="Execute").click()

    expect(stats.locator(".live-responses-table td.response-col_status:not(.col_header)")
           ).to_have_text("200")
    assert sent == [f"Bearer {TOKEN}"]
    watched.assert_clean()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = spawn_embedded(tmp_path_factory.mktemp("embedded-docs"))
    try:
        yield running
    finally:
        finish(running)


def test_an_embedding_apps_docs_render_offline_under_its_prefix(
        embedded: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = offline(watched, embedded)
    page.goto(f"{embedded.base_url}/offload/docs")

    assert_rendered_from_here(watched, embedded, "/offload")
    watched.assert_clean()

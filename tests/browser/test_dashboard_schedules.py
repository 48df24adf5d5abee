"""The dashboard's Schedules section in real headless Chromium against real servers started
with OFFLOAD_SCHEDULES: both kinds of schedule listed with their expressions, the next run
moving on after a tick without a reload (and without a fixed-interval poll), pause and
resume through the API, 375 px wide, and with tokens on (the schedule's tasks belong to no
token, so the last task shows as text)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.server import Server, finish, start

from .conftest import TASK_MODULES, Watched, loaded

pytestmark = pytest.mark.e2e
TOKEN = "schedules-token-0123456789"
SCHEDULES = json.dumps([
    {"name": "heartbeat", "task": "add", "every": 1, "args": [1, 2]},
    {"name": "nightly-report", "task": "add", "cron": "30 2 * * *",
     "timezone": "Europe/Paris", "args": [2, 3]},
])


def start_scheduled(tmp: Any, name: str, **overrides: str) -> Server:
    return start(tmp, name=name, OFFLOAD_TASK_MODULES=TASK_MODULES, OFFLOAD_SCHEDULES=SCHEDULES,
                 OFFLOAD_SHUTDOWN_GRACE="1", **overrides)


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_scheduled(tmp_path_factory.mktemp("scheduled"), "scheduled")
    try:
        yield server
    finally:
        finish(server)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_scheduled(tmp_path_factory.mktemp("guarded"), "guarded-scheduled",
                             OFFLOAD_API_TOKENS=TOKEN)
    try:
        yield server
    finally:
        finish(server)


def open_dashboard(watched: Watched, server: Server) -> Page:
    page = watched.page
    page.goto(f"{server.base_url}/")
    expect(page.locator("#connection")).to_have_text("Live")
    loaded(page)
    return page


def schedule_row(page: Page, name: str) -> Locator:
    return page.locator(f'#schedule-rows tr[data-schedule="{name}"]')


def api_schedule(server: Server, name: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{server.base_url}/schedules", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = next(s for s in response.json()["items"] if s["name"] == name)
    return found


def next_run(row: Locator) -> str:
    return row.locator(".next-run time").get_attribute("datetime") or ""


def test_the_section_lists_every_schedule_and_follows_the_ticks_without_a_reload(
        scheduled: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = open_dashboard(watched, scheduled)
    page.evaluate("window.__sameDocument = true")
    section = page.get_by_role("region", name="Schedules")
    expect(section).to_be_visible()
    heartbeat, nightly = schedule_row(page, "heartbeat"), schedule_row(page, "nightly-report")
    expect(page.locator("#schedule-rows tr")).to_have_count(2)
    expect(heartbeat.locator("th")).to_have_text("heartbeat")
    expect(heartbeat.locator("td.task")).to_have_text("add")
    expect(heartbeat.locator("code.when")).to_have_text("every 1 s")
    expect(nightly.locator("code.when")).to_have_text("30 2 * * * (Europe/Paris)")
    expect(nightly.locator(".next-run time")).to_have_text(
        re.compile(r"^in \d+ (h|min|d)"))
    assert nightly.locator(".next-run time").get_attribute("title")  # the local date and time
    assert next_run(nightly) == api_schedule(scheduled, "nightly-report")["next_run_at"]

    first = next_run(heartbeat)
    assert first
    page.wait_for_function(  # the tick passes; the page reads the schedules again by itself
        "([row, first]) => row.querySelector('.next-run time')?.dateTime > first",
        arg=[heartbeat.element_handle(), first])
    link = heartbeat.locator(".last-task a")
    expect(link).to_be_visible()
    expect(heartbeat.locator(".last-status .badge")).to_have_text("succeeded")
    assert page.evaluate("window.__sameDocument") is True  # never reloaded

    task_id = (link.get_attribute("title") or "")
    assert task_id
    link.click()
    detail = page.get_by_role("dialog", name="Task add")
    expect(detail).to_be_visible()
    expect(detail.locator("#detail-body code")).to_have_text(task_id)
    expect(detail.locator(".badge")).to_have_text("succeeded")
    watched.assert_clean()


def test_pause_and_resume_act_for_the_whole_deployment(
        scheduled: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = open_dashboard(watched, scheduled)
    heartbeat = schedule_row(page, "heartbeat")
    try:
        heartbeat.get_by_role("button", name="Pause schedule heartbeat").click()
        expect(heartbeat.locator(".next-run")).to_have_text("paused")
        resume = heartbeat.get_by_role("button", name="Resume schedule heartbeat")
        expect(resume).to_be_visible()
        expect(resume).to_have_text("Resume")
        paused = api_schedule(scheduled, "heartbeat")
        assert paused["paused"] is True
        assert paused["next_run_at"] is None
        assert api_schedule(scheduled, "nightly-report")["paused"] is False

        resume.click()
        expect(heartbeat.locator(".next-run time")).to_be_visible()
        expect(heartbeat.get_by_role("button", name="Pause schedule heartbeat")).to_be_focused()
        assert api_schedule(scheduled, "heartbeat")["paused"] is False
    finally:
        httpx.post(f"{scheduled.base_url}/schedules/heartbeat/resume", timeout=30)
    watched.assert_clean()


def test_the_section_is_usable_375_px_wide(scheduled: Server, make_page: Any) -> None:
    watched: Watched = make_page(width=375, height=740)
    page = open_dashboard(watched, scheduled)
    nightly = schedule_row(page, "nightly-report")
    expect(nightly.locator("code.when")).to_have_text("30 2 * * * (Europe/Paris)")
    button = nightly.get_by_role("button", name="Pause schedule nightly-report")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    row_box = nightly.bounding_box()

    overflow = page.evaluate("document.documentElement.scrollWidth"
                             " - document.documentElement.clientWidth")
    assert overflow == 0
    assert box is not None
    assert row_box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 375
    assert row_box["x"] + row_box["width"] <= 375
    watched.assert_clean()


def test_no_schedules_no_section(server: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = open_dashboard(watched, server)
    expect(page.locator("#schedule-table")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#schedules")).to_be_hidden()
    expect(page.locator("#schedule-rows tr")).to_have_count(0)
    watched.assert_clean()


def test_with_tokens_the_last_task_shows_as_text(guarded: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = watched.page
    page.goto(f"{guarded.base_url}/")
    prompt = page.get_by_role("dialog", name="API token")
    prompt.get_by_label("Token").fill(TOKEN)
    prompt.get_by_role("button", name="Use this token").click()
    expect(page.locator("#connection")).to_have_text("Live")
    heartbeat = schedule_row(page, "heartbeat")
    last = heartbeat.locator(".last-task .task-id")
    expect(last).to_be_visible()  # after the first tick
    expect(heartbeat.locator(".last-status .badge")).to_have_text("succeeded")

    assert heartbeat.locator(".last-task a").count() == 0
    task_id = last.get_attribute("title") or ""
    assert task_id
    assert task_id.startswith((last.inner_text()).rstrip("…"))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{guarded.base_url}/tasks/{task_id}", headers=headers,
                     timeout=30).status_code == 404  # why it is not a link
    heartbeat.get_by_role("button", name="Pause schedule heartbeat").click()
    expect(heartbeat.locator(".next-run")).to_have_text("paused")
    assert api_schedule(guarded, "heartbeat", TOKEN)["paused"] is True
    watched.assert_clean(401)

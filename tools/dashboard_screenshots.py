"""Screenshots of the dashboard for the docs: ``.venv/bin/python -m tools.dashboard_screenshots``.

Starts the real service (demo tasks, tracebacks exposed, three schedules, one of them
paused) on a free loopback port, runs a minute of mixed work so that every status, the
throughput chart and the schedules have something to show,
and saves, with Debian's Chromium (never a downloaded browser):

- docs/screenshots/dashboard.png         1280 px wide, the whole page
- docs/screenshots/dashboard-detail.png  a failed task's detail view
- docs/screenshots/dashboard-narrow.png  375 px wide (a phone), the top 1500 px
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e.server import REPO, finish, start

OUT = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ROUNDS = 12  # rounds of finished work, one every ~3 s: the throughput chart's last minute
SCHEDULES = json.dumps([
    {"name": "heartbeat", "task": "add", "every": 10, "args": [1, 1]},
    {"name": "nightly-report", "task": "count", "cron": "0 3 * * *",
     "timezone": "Europe/Paris", "args": [5]},
    {"name": "weekly-cleanup", "task": "sleep", "cron": "30 4 * * SUN", "args": [1]},
])
PAUSED = "weekly-cleanup"


def submit(api: httpx.Client, name: str, *args: Any, **options: Any) -> str:
    response = api.post("/tasks", json={"name": name, "args": list(args), **options})
    response.raise_for_status()
    task_id: str = response.json()["id"]
    return task_id


def wait(api: httpx.Client, task_id: str) -> None:
    api.get(f"/tasks/{task_id}", params={"wait": 30}).raise_for_status()


def history(api: httpx.Client) -> str:
    """Finished work spread over the last half minute; returns a failed task's id."""
    failed = ""
    for round_ in range(ROUNDS):
        done = [submit(api, "add", round_, n) for n in range(round_ % 4 + 1)]
        done.append(submit(api, "cpu", 200_000 + round_))
        if round_ % 3 == 0:
            failed = submit(api, "fail", f"upstream answered 503 (round {round_})")
            done.append(failed)
        for task_id in done:
            wait(api, task_id)
        time.sleep(3)  # spreading the history over time is the point here
    return failed


def present(api: httpx.Client) -> None:
    """Tasks now running, queued, scheduled, waiting and cancelled; a paused schedule."""
    submit(api, "count", 200, kwargs={"delay": 0.5})
    submit(api, "count", 40, kwargs={"delay": 0.3})
    blocking = submit(api, "blocking_sleep", 120)
    submit(api, "add", 2, 2, depends_on=[blocking])  # waiting for it
    api.post(f"/schedules/{PAUSED}/pause").raise_for_status()
    submit(api, "long_task")
    submit(api, "sleep", 600, delay=600)
    cancelled = submit(api, "sleep", 600)
    api.post(f"/tasks/{cancelled}/cancel").raise_for_status()
    time.sleep(4)  # let the counters move a few steps before the picture


def shoot(base: str, failed: str) -> None:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM,
                                         args=["--headless", "--no-sandbox", "--disable-gpu"])
        wide = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="light")
        ready(wide, base + "/")
        wide.screenshot(path=OUT / "dashboard.png", full_page=True)
        wide.locator(f'a[href="#task/{failed}"]').first.click()
        expect(wide.locator("#detail .traceback")).to_be_visible()
        wide.locator("#detail").screenshot(path=OUT / "dashboard-detail.png")
        narrow = browser.new_page(viewport={"width": 375, "height": 812}, color_scheme="light",
                                  device_scale_factor=2)
        ready(narrow, base + "/")
        # the top of the page, down to the first tasks of the table
        narrow.screenshot(path=OUT / "dashboard-narrow.png", full_page=True,
                          clip={"x": 0, "y": 0, "width": 375, "height": 1500})
        browser.close()


def ready(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#task-rows tr").first).to_be_visible()
    expect(page.locator("#schedule-rows tr")).to_have_count(3)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = start(Path(tmp), name="screenshots", OFFLOAD_EXPOSE_TRACEBACKS="true",
                       OFFLOAD_SHUTDOWN_GRACE="1", OFFLOAD_SCHEDULES=SCHEDULES)
        try:
            with httpx.Client(base_url=server.base_url, timeout=60) as api:
                failed = history(api)
                present(api)
            shoot(server.base_url, failed)
        finally:
            finish(server)
    for name in ("dashboard.png", "dashboard-detail.png", "dashboard-narrow.png"):
        print(OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

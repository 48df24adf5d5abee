"""Fixtures of the browser tests: Debian's Chromium driven by Playwright (never a downloaded
browser), one launch per test module, a fresh context per test; real servers on loopback.

Playwright's sync API runs its own event loop in this thread while it is started, so these
tests and fixtures are plain functions (pytest-asyncio's auto mode leaves them alone), and
Playwright stops at the end of each module: started for the whole session, it would leave
every async test after it "called from a running event loop".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.e2e.server import STARTUP_DEADLINE, Server, finish, server_env, spawn, start

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
TASK_MODULES = "service.demo,tests.browser.browser_tasks"
TIMEOUT_MS = 20_000  # how long an expectation may take to come true on a busy machine
# Every CSP violation the page sees, kept where the test can read it. An init script is
# injected by the browser itself, so the page's CSP does not apply to it.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


@dataclass
class Watched:
    """A page with what went wrong on it: console errors and warnings, uncaught errors,
    dialogs opened by script (window.prompt and friends) and requests it made."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    script_dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("window.__cspViolations ?? []")
        return found

    def assert_clean(self, *allowed_statuses: int, network_errors: bool = False) -> None:
        """No page error, no CSP violation, no script dialog; console errors only for
        answers with one of ``allowed_statuses`` (Chromium logs each failed fetch) and, if
        ``network_errors``, for connections that broke (net::ERR_…)."""
        allowed = tuple(f"status of {status} " for status in allowed_statuses)
        if network_errors:
            allowed += ("net::ERR_",)
        console = [m for m in self.console if not (
            ("Failed to load resource" in m or "net::ERR_" in m) and any(a in m for a in allowed))]
        assert console == [], console
        assert self.errors == [], self.errors
        assert self.csp_violations() == []
        assert self.script_dialogs == []


def loaded(page: Page) -> None:
    """Until the page has read the state (it says so with aria-busy on its main part)."""
    expect(page.locator("main")).to_have_attribute("aria-busy", "false")


def settled(page: Page) -> None:
    """Until the task table shows the page last asked for (aria-busy off)."""
    expect(page.locator("#task-table")).to_have_attribute("aria-busy", "false")


def _record(watched: Watched, message: ConsoleMessage) -> None:
    if message.type in {"error", "warning"}:
        watched.console.append(f"{message.type}: {message.text}")


@pytest.fixture
def make_page(browser: Browser) -> Iterator[Callable[..., Watched]]:
    """Open pages (``make_page(width=1280)``); each gets its own context, closed after."""
    contexts: list[BrowserContext] = []

    def make(width: int = 1280, height: int = 900) -> Watched:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.add_init_script(RECORD_CSP_VIOLATIONS)
        watched = Watched(page)
        page.on("console", lambda message: _record(watched, message))
        page.on("pageerror", lambda error: watched.errors.append(str(error)))
        page.on("request", lambda request: watched.requests.append(request.url))

        def refuse(dialog: Dialog) -> None:
            watched.script_dialogs.append(dialog.message)
            dialog.dismiss()
        page.on("dialog", refuse)
        return watched

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The standalone service with the demo and browser tasks (auth off)."""
    running = start(tmp_path_factory.mktemp("browser"), name="browser",
                    OFFLOAD_TASK_MODULES=TASK_MODULES, OFFLOAD_SHUTDOWN_GRACE="1")
    try:
        yield running
    finally:
        finish(running)


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def spawn_embedded(tmp_dir: Path) -> Server:
    """``python -m service --app tests.e2e.host_app:app``: Offload under /offload."""
    env = server_env(OFFLOAD_TASK_MODULES="service.demo", OFFLOAD_SHUTDOWN_GRACE="1")
    embedded = spawn(tmp_dir, env, "--app", "tests.e2e.host_app:app", name="embedded")
    end = time.monotonic() + STARTUP_DEADLINE
    with httpx.Client(base_url=embedded.base_url, timeout=2.0) as client:
        while time.monotonic() < end:
            assert embedded.process.poll() is None, embedded.output_tail()
            try:
                if client.get("/offload/readyz").status_code == 200:
                    return embedded
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling a starting server's readiness, not waiting for a task
    embedded.kill()
    raise AssertionError(f"not ready within {STARTUP_DEADLINE}s:\n{embedded.output_tail()}")



expect.set_options(timeout=TIMEOUT_MS)

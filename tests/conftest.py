"""Shared fixtures: a started task service, and the standalone app with its test client."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from quart import Quart

from service import TaskService
from service.app import create_app
from service.settings import DEMO_MODULE, Settings

from . import sample_tasks

TEST_MODULES = (DEMO_MODULE, "tests.sample_tasks")
FAST = Settings(task_modules=TEST_MODULES, shutdown_grace=1.0, retry_backoff=0.01,
                process_workers=2)


def settings(**overrides: Any) -> Settings:
    """Test settings: the demo and sample tasks, short grace, fast retries."""
    return dataclasses.replace(FAST, **overrides)


@pytest.fixture(autouse=True)
def _fresh_events() -> Iterator[None]:
    sample_tasks.reset_gates()
    sample_tasks.execution_order.clear()
    yield
    sample_tasks.reset_gates()


@pytest.fixture
async def service() -> AsyncIterator[TaskService]:
    """A started core service (no HTTP) with the demo and sample tasks."""
    svc = TaskService(settings())
    for module in TEST_MODULES:
        svc.register_module(module)
    await svc.start()
    yield svc
    await svc.stop(grace=0.5)


@pytest.fixture
async def make_service() -> AsyncIterator[Callable[..., TaskService]]:
    """Build services with custom settings; each is stopped after the test."""
    made: list[TaskService] = []

    def build(**overrides: Any) -> TaskService:
        svc = TaskService(settings(**overrides))
        for module in TEST_MODULES:
            svc.register_module(module)
        made.append(svc)
        return svc

    yield build
    for svc in made:
        await svc.stop(grace=0.5)


@pytest.fixture
def app() -> Quart:
    return create_app(settings())


@pytest.fixture
async def client(app: Quart) -> AsyncIterator[Any]:
    """Quart's test client against the started standalone app."""
    async with app.test_app() as test_app:
        yield test_app.test_client()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> Iterator[None]:
    """In CI a skipped test is a failure: every test must really run."""
    if os.environ.get("CI") == "true" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true forbids skips): {report.longrepr}"
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report shows the output of the real servers it used."""
    from .e2e.server import Server  # only the tests that start servers need it

    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, Server):
            report.sections.append((f"output of server {name!r} (pid {value.pid})",
                                    value.output_tail()))

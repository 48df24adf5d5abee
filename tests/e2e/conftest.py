"""Fixtures of the end-to-end tests: the real Hypercorn server and an httpx client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from .server import Server, finish, start

E2E_MODULES = "service.demo,tests.e2e.e2e_tasks"
CLIENT_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server per test module (tests that need another configuration start their
    own): the demo tasks plus the e2e tasks, a short shutdown grace."""
    running = start(tmp_path_factory.mktemp("server"), OFFLOAD_TASK_MODULES=E2E_MODULES,
                    OFFLOAD_SHUTDOWN_GRACE="2")
    try:
        yield running
    finally:
        finish(running)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http:
        yield http

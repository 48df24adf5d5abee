"""Fixtures of the HTTP API tests: started apps with chosen settings, and their clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from service.app import create_app

from .. import sample_tasks
from ..conftest import TEST_MODULES, settings

WEB_MODULES = (*TEST_MODULES, "tests.web.web_tasks")
MakeClient = Callable[..., Awaitable[Client]]


def web_app(**overrides: Any) -> Quart:
    """The standalone app with the demo, sample and web test tasks (not started)."""
    overrides.setdefault("task_modules", WEB_MODULES)
    return create_app(settings(**overrides))


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """Start an app with these settings overrides and return its test client.

    At the end every gate is opened before the apps stop, so that no test waits out the
    shutdown grace for a task still blocked on its gate.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def build(**overrides: Any) -> Client:
            test_app: Any = web_app(**overrides).test_app()
            started = await stack.enter_async_context(test_app)
            client: Client = started.test_client()
            return client

        yield build
        for gate in sample_tasks.gates.values():
            gate.open()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    """The started standalone app (demo, sample and web test tasks), default test settings."""
    return await make_client()

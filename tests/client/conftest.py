"""Fixtures of the client tests: real servers on loopback ports, started once per package
(a start costs about a second), and clients of them."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from service.client import AsyncOffloadClient, OffloadClient

from ..e2e.server import Server, finish, start

# journal_run and gated_count: tasks held by a gate file until the test opens it
MODULES = "service.demo,tests.e2e.durable_tasks,tests.client.client_tasks"
TOKENS = ("alice-token", "bob-token")
WAIT = 20.0  # seconds a test waits for a task that ends well before


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo tasks and the gated ones, no auth."""
    running = start(tmp_path_factory.mktemp("client-server"), OFFLOAD_TASK_MODULES=MODULES,
                    OFFLOAD_SHUTDOWN_GRACE="2")
    try:
        yield running
    finally:
        finish(running)


@pytest.fixture(scope="package")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Auth on: two tokens."""
    running = start(tmp_path_factory.mktemp("client-token-server"),
                    OFFLOAD_TASK_MODULES=MODULES, OFFLOAD_SHUTDOWN_GRACE="2",
                    OFFLOAD_API_TOKENS=",".join(TOKENS))
    try:
        yield running
    finally:
        finish(running)


@pytest.fixture(autouse=True)
def no_client_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say where the service is; the caller's OFFLOAD_URL/OFFLOAD_TOKEN never leak in."""
    monkeypatch.delenv("OFFLOAD_URL", raising=False)
    monkeypatch.delenv("OFFLOAD_TOKEN", raising=False)


@pytest.fixture
def client(server: Server) -> Iterator[OffloadClient]:
    with OffloadClient(server.base_url) as offload:
        yield offload


@pytest.fixture
async def aclient(server: Server) -> AsyncIterator[AsyncOffloadClient]:
    async with AsyncOffloadClient(server.base_url) as offload:
        yield offload


class RetryLog(logging.Handler):
    """The client's retry messages, with an event set at each one."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.retried = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retrying" in message:
            self.messages.append(message)
            self.retried.set()


@pytest.fixture
def retry_log() -> Iterator[RetryLog]:
    logger = logging.getLogger("offload.client")
    handler, level = RetryLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

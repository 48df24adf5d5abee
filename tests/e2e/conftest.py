"""Fixtures of the end-to-end tests: the real Hypercorn server and an httpx client on it.

The HTTP contract holds in both deployments, so each module that uses ``server`` (or
``mode``) runs twice:

- ``embedded``: ``python -m service`` alone, tasks run in the server (the default);
- ``celery``: Celery mode as docs/celery.md sets it up, a web process
  (``python -m service`` with ``OFFLOAD_STORE=redis://…`` and ``OFFLOAD_CELERY_BROKER``)
  and a real ``celery -A service.celery_app worker --pool prefork -c 2`` on a real
  redis-server. The redis-server and the worker are started once per session, the first
  time a test needs them (a worker takes seconds to be ready); each module starts its
  own web process on them.

A test that fails only in Celery mode because of a product bug carries
``@pytest.mark.xfail_celery(reason=...)``: strict xfail for the ``celery`` param only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.celery.cluster import Deployment, Worker, start_web, start_worker
from tests.redis_server import running_redis

from .durable_tasks import RUNS_ENV
from .server import Server, finish, start
from .sqlite_helpers import two_workers_in

E2E_MODULES = "service.demo,tests.e2e.e2e_tasks"
MODE_MODULES = f"{E2E_MODULES},tests.e2e.durable_tasks"  # both modes: the journaled tasks too
MODES = ("embedded", "celery")
CLIENT_TIMEOUT = 30.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xfail_celery(reason): a known product bug in Celery "
                                       "mode only: strict xfail for the celery param")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("xfail_celery")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or callspec.params.get("mode") != "celery":
            continue
        item.add_marker(pytest.mark.xfail(strict=True, reason=marker.kwargs["reason"]))


@dataclass(frozen=True)
class CeleryBackend:
    """What the Celery-mode web processes of this session share: store, broker, worker."""

    deployment: Deployment
    worker: Worker
    tmp: Path

    @property
    def runs(self) -> Path:
        return self.deployment.runs


_backends: list[CeleryBackend] = []  # the one started, for the reports of failed tests


@pytest.fixture(scope="session")
def celery_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryBackend]:
    """One redis-server (store and broker) and one Celery worker (prefork, two pool
    processes) for every Celery-mode module of the session."""
    tmp = tmp_path_factory.mktemp("celery-e2e")
    with running_redis() as redis:
        deployment = Deployment.on(redis, tmp / "runs.jsonl", MODE_MODULES)
        worker = start_worker(tmp, deployment, "e2e")
        backend = CeleryBackend(deployment, worker, tmp)
        _backends.append(backend)
        try:
            yield backend
        finally:
            _backends.remove(backend)
            code = worker.stop()
    assert code == 0, f"the worker exited with code {code}:\n{worker.output()[-6000:]}"


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """``embedded`` or ``celery``: the deployment this module's servers belong to."""
    value: str = request.param
    return value


@pytest.fixture(scope="module")
def runs(mode: str, request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs journal (``durable_tasks``) that this module's servers write."""
    if mode == "celery":
        backend: CeleryBackend = request.getfixturevalue("celery_backend")
        return backend.runs
    return tmp_path_factory.mktemp("runs") / "runs.jsonl"


@contextlib.contextmanager
def serving_in(request: pytest.FixtureRequest, mode: str, tmp: Path, name: str = "server",
               **overrides: str) -> Iterator[Server]:
    """A server of ``mode`` (a fixture asking for this names ``mode`` among its own
    arguments, so that its tests run in both), with these ``OFFLOAD_*`` overrides, ready;
    stopped at the end (one that needed SIGKILL or exited non-zero is an error)."""
    if mode == "celery":
        backend: CeleryBackend = request.getfixturevalue("celery_backend")
        running = start_web(tmp, backend.deployment, name, **overrides)
    else:
        journal: Path = request.getfixturevalue("runs")
        settings = {"OFFLOAD_TASK_MODULES": MODE_MODULES, "OFFLOAD_SHUTDOWN_GRACE": "2",
                    RUNS_ENV: str(journal), **overrides}
        running = start(tmp, name, **settings)
    try:
        yield running
    finally:
        finish(running)


@pytest.fixture(scope="module")
def server(mode: str, request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server per test module and mode (tests that need another configuration
    start their own): the demo tasks, the e2e and the journaled tasks, a short grace."""
    with serving_in(request, mode, tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture(scope="module")
def two_workers(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per module with two Hypercorn workers on one SQLite file (the SQLite
    modules; its runs journal: ``sqlite_helpers.runs_of``)."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with two_workers_in(tmp_path_factory.mktemp(name), name) as server:
        yield server


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http:
        yield http


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed Celery-mode test's report shows the output of the session's worker."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    callspec = getattr(item, "callspec", None)
    if not report.failed or callspec is None or callspec.params.get("mode") != "celery":
        return
    for backend in _backends:
        report.sections.append(("celery worker", backend.worker.output()[-6000:]))

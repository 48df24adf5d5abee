"""Fixtures of the Celery-mode tests: a real redis-server (store and broker), real Celery
workers and real web processes, one set per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server
from tests.redis_server import RedisServer, running_redis

from .cluster import Deployment, Worker, running, stop_all

CLIENT_TIMEOUT = 30.0


@dataclass
class Cluster:
    deployment: Deployment
    webs: list[Server]
    workers: list[Worker]
    tmp: Path

    @property
    def web(self) -> Server:
        return self.webs[0]

    @property
    def runs(self) -> Path:
        return self.deployment.runs

    def stop(self) -> None:
        stop_all(self.webs, self.workers)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis(persistent=True) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One web process and one worker (prefork, two pool processes)."""
    tmp = tmp_path_factory.mktemp("celery")
    deployment = Deployment.on(redis, tmp / "runs.jsonl")
    with running(tmp, deployment) as (webs, workers):
        yield Cluster(deployment, webs, workers, tmp)


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.web.base_url, timeout=CLIENT_TIMEOUT) as http:
        yield http


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report shows the output of the workers and web processes it used."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    found = getattr(item, "funcargs", {}).get("cluster")
    if isinstance(found, Cluster):
        for worker in found.workers:
            report.sections.append((f"worker {worker.hostname}", worker.output()[-6000:]))
        for web in found.webs:
            report.sections.append((f"web {web.pid}", web.output_tail(6000)))

"""Celery's other pools: a worker started with ``--pool threads`` or ``--pool solo`` runs
async, def and process tasks (process tasks in a subprocess of the worker, as one-process
Offload runs them), and a cancel reaches a running process task there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.durable_tasks import read_runs
from tests.e2e.helpers import submit, wait_terminal
from tests.e2e.server import finish
from tests.e2e.sqlite_helpers import key_prefix, wait_until
from tests.redis_server import RedisServer

from .cluster import Deployment, start_web, start_worker
from .conftest import CLIENT_TIMEOUT, Cluster
from .test_celery_mode import started

pytestmark = pytest.mark.e2e
POOLS = [("--pool", "threads", "-c", "2"), ("--pool", "solo")]


@pytest.fixture(scope="module", params=POOLS, ids=["threads", "solo"])
def cluster(request: pytest.FixtureRequest, redis: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("celery-pools")
    deployment = Deployment.on(redis, tmp / "runs.jsonl")
    worker = start_worker(tmp, deployment, "pool", *request.param)
    web = None
    try:
        web = start_web(tmp, deployment, "web")
        yield Cluster(deployment, [web], [worker], tmp)
    finally:
        worker.stop()
        if web is not None and web.process.poll() is None:
            finish(web)


async def test_async_def_and_process_tasks_run(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.web.base_url,
                                 timeout=CLIENT_TIMEOUT) as client:
        tasks = [await submit(client, "add", 2, 3), await submit(client, "blocking_sleep", 0.1),
                 await submit(client, "cpu", 1000), await submit(client, "count", 3, 0.01)]
        ends = [await wait_terminal(client, task["id"]) for task in tasks]
    assert [(end["status"], end["result"]) for end in ends] == [
        ("succeeded", 5), ("succeeded", 0.1),
        ("succeeded", sum(i * i for i in range(1000))), ("succeeded", 3)]
    assert ends[3]["progress"]["current"] == 3


async def test_a_cancel_stops_a_running_process_task(cluster: Cluster) -> None:
    key = key_prefix() + "spin"
    async with httpx.AsyncClient(base_url=cluster.web.base_url,
                                 timeout=CLIENT_TIMEOUT) as client:
        task = await submit(client, "spin", key)
        pid = await started(cluster, key)
        assert pid != cluster.workers[0].pid  # a subprocess of the worker, not the worker
        assert (await client.post(f"/tasks/{task['id']}/cancel")).status_code == 202
        assert (await wait_terminal(client, task["id"]))["status"] == "cancelled"
        await wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the process is gone", 30)
        again = await submit(client, "add", 1, 2)
        assert (await wait_terminal(client, again["id"]))["result"] == 3
    assert [run.event for run in read_runs(cluster.runs) if run.key == key] == ["start"]

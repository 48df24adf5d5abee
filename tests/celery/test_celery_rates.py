"""Limits in Celery mode: two Celery workers (two pool processes each) run one type limited
to 3 starts a second, set by ``OFFLOAD_RATE_LIMITS`` as the workers read it, and one type
of ``concurrency=2``.

Four pool processes and tasks of 0.2 s could start 20 a second: the limit holds only if
each worker's ``claim_by_id`` counts the starts of the other. A task held back waits (its
type's gate in the store wakes one at a time, in queue order, when a start is allowed);
none fails.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.durable_tasks import most_at_once, read_runs, starts
from tests.e2e.helpers import wait_terminal
from tests.e2e.sqlite_helpers import key_prefix
from tests.redis_server import RedisServer

from .cluster import Deployment, running
from .conftest import CLIENT_TIMEOUT, Cluster

pytestmark = pytest.mark.e2e
LIMIT, PERIOD = 3, timedelta(seconds=1)
TASKS = 15
HOLD = 0.2  # seconds each task runs


@pytest.fixture(scope="module")
def cluster(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("celery-rates")
    deployment = Deployment.on(redis, tmp / "runs.jsonl")
    limits = json.dumps({"journal_run": f"{LIMIT}/s"})
    with running(tmp, deployment, workers=2, OFFLOAD_RATE_LIMITS=limits) as (webs, workers):
        yield Cluster(deployment, webs, workers, tmp)


def most_in_a_window(times: list[datetime]) -> int:
    """The most starts any half-open window [t, t + 1 s) holds."""
    return max(sum(1 for other in times if at <= other < at + PERIOD) for at in times)


async def run_batch(cluster: Cluster, name: str, key: str) -> list[dict[str, Any]]:
    """Submit TASKS of ``name`` in one batch (keys ``<key><i>``); each as it ended."""
    batch = {"tasks": [{"name": name, "args": [f"{key}{i}", HOLD]} for i in range(TASKS)]}
    async with httpx.AsyncClient(base_url=cluster.web.base_url,
                                 timeout=CLIENT_TIMEOUT) as http:
        answer = await http.post("/tasks/batch", json=batch)
        assert answer.status_code == 202, answer.text
        ids = [item["id"] for item in answer.json()["items"]]
        tasks = await asyncio.gather(*(wait_terminal(http, task_id) for task_id in ids))
    assert [(t["status"], t["attempts"]) for t in tasks] == [("succeeded", 1)] * TASKS
    return tasks


async def test_two_workers_keep_one_rate_limit(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.web.base_url,
                                 timeout=CLIENT_TIMEOUT) as http:
        types = (await http.get("/task-types")).json()
    limited = next(t for t in types["items"] if t["name"] == "journal_run")
    assert limited["rate_limit"] == f"{LIMIT}/s"
    key = key_prefix()
    tasks = await run_batch(cluster, "journal_run", key)
    times = [datetime.fromisoformat(t["started_at"]) for t in tasks]
    assert most_in_a_window(times) <= LIMIT
    # the limit bound: 15 starts at 3 a second take more than 4 s from first to last
    assert max(times) - min(times) > 4 * PERIOD
    runs = starts(cluster.runs, key)
    assert len(runs) == TASKS  # each ran once
    assert_in_queue_order([int(run.key.removeprefix(key)) for run in runs], LIMIT)


def assert_in_queue_order(started: list[int], first: int) -> None:
    """Once a limit has held a start back (after the ``first`` starts at most, which race
    for it), the type's records start in the order they were queued."""
    after = started[first:]
    assert after == sorted(after), started
    assert sorted(started) == list(range(len(started)))


async def test_two_workers_keep_one_concurrency_limit(cluster: Cluster) -> None:
    key = key_prefix()
    await run_batch(cluster, "limited_run", key)
    runs = [run for run in read_runs(cluster.runs) if run.key.startswith(key)]
    assert len(runs) == 2 * TASKS  # each ran once, start to end
    assert most_at_once(runs) <= 2
    assert_in_queue_order([int(run.key.removeprefix(key)) for run in runs
                           if run.event == "start"], 2)

"""Celery mode with two Celery workers and two web processes on one redis-server: work
spreads over both workers and runs once; any web process answers for any task; a worker
killed outright (every process of it) loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.durable_tasks import starts, starts_by_key
from tests.e2e.helpers import submit, wait_terminal
from tests.e2e.sqlite_helpers import key_prefix, wait_until
from tests.redis_server import RedisServer

from .cluster import Deployment, running
from .conftest import CLIENT_TIMEOUT, Cluster

pytestmark = pytest.mark.e2e
TASKS = 40


@pytest.fixture(scope="module")
def cluster(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("celery-scale")
    deployment = Deployment.on(redis, tmp / "runs.jsonl")
    with running(tmp, deployment, workers=2, webs=2) as (webs, workers):
        yield Cluster(deployment, webs, workers, tmp)


def clients(cluster: Cluster) -> list[httpx.AsyncClient]:
    return [httpx.AsyncClient(base_url=web.base_url, timeout=CLIENT_TIMEOUT)
            for web in cluster.webs]


async def test_work_spreads_over_two_workers_and_runs_once(cluster: Cluster) -> None:
    key = key_prefix()
    one, two = clients(cluster)
    async with one, two:
        tasks = await asyncio.gather(*(submit((one, two)[i % 2], "journal_run", f"{key}{i}", 0.2)
                                       for i in range(TASKS)))
        # each waited for on the other web process
        ends = await asyncio.gather(*(wait_terminal((two, one)[i % 2], task["id"])
                                      for i, task in enumerate(tasks)))
    assert [(end["status"], end["attempts"]) for end in ends] == [("succeeded", 1)] * TASKS
    by_key = starts_by_key(cluster.runs, key)
    assert sorted(by_key) == sorted(f"{key}{i}" for i in range(TASKS))
    assert all(len(runs) == 1 for runs in by_key.values())  # none ran twice
    ran_in = {runs[0].pid for runs in by_key.values()}
    first, second = (worker.pool_pids() for worker in cluster.workers)
    assert ran_in <= first | second
    assert ran_in & first
    assert ran_in & second


async def test_a_cancel_on_one_web_process_reaches_a_task_from_the_other(cluster: Cluster
                                                                        ) -> None:
    key = key_prefix() + "cancel"
    one, two = clients(cluster)
    async with one, two:
        task = await submit(one, "journal_run", key, 60.0, str(cluster.tmp / "never"))
        await wait_until(lambda: len(starts(cluster.runs, key)) == 1, "it starts", 30)
        assert (await two.post(f"/tasks/{task['id']}/cancel")).status_code == 202
        ended = await wait_terminal(one, task["id"])
    assert ended["status"] == "cancelled"


async def test_a_worker_killed_outright_loses_nothing(cluster: Cluster) -> None:
    """kill -9 of every process of one worker: its message stays with the broker (the
    Redis transport hands it out again only after its visibility timeout), so the web
    processes take the task back when its lease ends, by the Interrupted rule."""
    key, gate = key_prefix(), cluster.tmp / f"gate-{key_prefix()}"
    one, two = clients(cluster)
    victim, survivor = cluster.workers
    names = [f"{kind}:{i}" for kind in ("idempotent_run", "journal_run") for i in range(2)]
    async with one, two:  # four tasks for four pool processes: the victim runs two
        tasks = {name: await submit(one, name.split(":")[0], f"{key}{name}", 60.0, str(gate))
                 for name in names}
        await wait_until(lambda: len(starts(cluster.runs, key)) == 4, "all start", 30)
        pids = {run.key: run.pid for run in starts(cluster.runs, key)}
        on_victim = {name for name in names if pids[f"{key}{name}"] in victim.pool_pids()}
        assert len(on_victim) == 2
        victim.kill()
        gate.touch()
        ends = {name: await wait_terminal(two, task["id"]) for name, task in tasks.items()}
    for name, end in ends.items():
        runs = starts(cluster.runs, f"{key}{name}")
        if name not in on_victim:
            assert (end["status"], end["attempts"]) == ("succeeded", 1), end
        elif name.startswith("idempotent_run"):
            assert (end["status"], end["attempts"]) == ("succeeded", 2), end
            assert runs[-1].pid in survivor.pool_pids()
        else:
            assert (end["status"], end["error"]["type"]) == ("failed", "Interrupted"), end
            assert len(runs) == 1


async def test_idempotency_lists_and_stats_hold_across_web_processes(cluster: Cluster
                                                                     ) -> None:
    key = key_prefix()
    one, two = clients(cluster)
    async with one, two:
        body, headers = {"name": "add", "args": [20, 22]}, {"Idempotency-Key": key}
        first = await one.post("/tasks", json=body, headers=headers)
        again = await two.post("/tasks", json=body, headers=headers)
        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json()["id"] == first.json()["id"]
        other = await two.post("/tasks", json={"name": "add", "args": [1, 1]}, headers=headers)
        assert other.status_code == 422  # the same key with another body
        tasks = [await submit((one, two)[i % 2], "journal_run", f"{key}{i}") for i in range(7)]
        for task in tasks:
            await wait_terminal(one, task["id"])
        listed = await page_through((one, two), {"name": "journal_run", "limit": 3})
        assert len(listed) == len(set(listed))  # no task twice across pages and processes
        ours = [task_id for task_id in listed if task_id in {t["id"] for t in tasks}]
        assert ours == [t["id"] for t in reversed(tasks)]  # newest first, each once
        stats = [(await web.get("/stats")).json() for web in (one, two)]
    assert stats[0]["counts"] == stats[1]["counts"]
    assert stats[0]["counts"]["succeeded"] >= len(tasks) + 1


async def page_through(webs: tuple[httpx.AsyncClient, ...], params: dict[str, Any]
                       ) -> list[str]:
    """Every id a paged GET /tasks lists, each page asked of the next web process."""
    ids: list[str] = []
    cursor: str | None = None
    for page in range(1000):
        answer = await webs[page % len(webs)].get(
            "/tasks", params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        ids += [item["id"] for item in answer.json()["items"]]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("the pages never ended")

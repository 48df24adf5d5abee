"""Limits in Celery mode: two Celery workers (two pool processes each) run one type limited
to 3 starts a second, set by ``OFFLOAD_RATE_LIMITS`` as the workers read it, and one type
of ``concurrency=2``.

Four pool processes and tasks of 0.2 s could start 20 a second: the limit holds only if
each worker's ``claim_by_id`` counts the starts of the other. A task held back waits (its
type's gate in the store wakes those that may start, in queue order, when a start is
allowed);
none fails.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.models import TaskRecord
from service.stores import open_store
from tests.e2e.durable_tasks import most_at_once, read_runs, starts
from tests.e2e.helpers import wait_terminal
from tests.e2e.server import Server, finish
from tests.e2e.sqlite_helpers import key_prefix
from tests.redis_server import RedisServer, running_redis

from .cluster import (
    Deployment,
    Worker,
    running,
    start_web,
    start_worker,
    stop_all,
    waiting_messages,
)
from .conftest import CLIENT_TIMEOUT, Cluster

pytestmark = pytest.mark.e2e
LIMIT, PERIOD = 3, timedelta(seconds=1)
TASKS = 15
HOLD = 0.2  # seconds each task runs
DEADLINE = 60.0  # seconds for tasks held by nothing but a limit to end
POLL = 0.05  # seconds between two looks at the store


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


def assert_in_queue_order(started: list[int], room: int) -> None:
    """The type's records start in the order they were queued, but for those that may
    start at the same moment (``room``: at most the limit), which race among themselves:
    no record starts while ``room`` or more queued before it wait."""
    for position, key in enumerate(started):
        waiting_before = [k for k in range(key) if k not in started[:position]]
        assert len(waiting_before) < room, (key, started)
    assert sorted(started) == list(range(len(started)))


async def test_two_workers_keep_one_concurrency_limit(cluster: Cluster) -> None:
    key = key_prefix()
    await run_batch(cluster, "limited_run", key)
    runs = [run for run in read_runs(cluster.runs) if run.key.startswith(key)]
    assert len(runs) == 2 * TASKS  # each ran once, start to end
    assert most_at_once(runs) <= 2
    assert_in_queue_order([int(run.key.removeprefix(key)) for run in runs
                           if run.event == "start"], 2)


async def test_a_type_at_its_concurrency_limit_drains_with_no_web_process(
        tmp_path: Path) -> None:
    # a redis-server of its own: the module's workers would take this broker's messages
    with running_redis() as redis:
        await drain_with_no_web_process(redis, tmp_path)


async def drain_with_no_web_process(redis: RedisServer, tmp_path: Path) -> None:
    # Four pool processes for a type of concurrency=2: messages that find both slots taken
    # are dropped (its gate stands for them). The web process is gone before a slot frees:
    # each worker whose task ends hands the next in line its message, and each start with
    # room left hands on the one after.
    deployment = Deployment.on(redis, tmp_path / "runs.jsonl")
    opened, key = tmp_path / "open", key_prefix()
    worker = start_worker(tmp_path, deployment, "w", "--pool", "prefork", "-c", "4")
    try:
        web = start_web(tmp_path, deployment, "web")
        batch = {"tasks": [{"name": "limited_run", "args": [f"{key}{i}", DEADLINE,
                                                            str(opened)]}
                           for i in range(TASKS)]}
        async with httpx.AsyncClient(base_url=web.base_url, timeout=CLIENT_TIMEOUT) as http:
            answer = await http.post("/tasks/batch", json=batch)
        assert answer.status_code == 202, answer.text
        ids = [item["id"] for item in answer.json()["items"]]
        await until(lambda: len(starts(deployment.runs, key)) == 2)
        finish(web)  # its messages sent (a clean stop waits for that); no dispatcher left
        opened.touch()
        ended = await all_ended(deployment.store, ids)
    finally:
        worker.stop()
    assert [(r.status.value, r.attempts) for r in ended] == [("succeeded", 1)] * TASKS
    runs = [run for run in read_runs(deployment.runs) if run.key.startswith(key)]
    assert len(runs) == 2 * TASKS  # each ran once, start to end
    assert most_at_once(runs) <= 2
    assert_in_queue_order([int(run.key.removeprefix(key)) for run in runs
                           if run.event == "start"], 2)


async def test_a_cancelled_woken_record_passes_its_turn_on(tmp_path: Path) -> None:
    # A record woken (its message sent by the worker whose task ended) is cancelled before
    # its message runs, by the last web process, which then stops: the lane must not
    # stall. Celery drops a revoked message unseen: the cancelling process passes the turn
    # on (tests/celery/test_dispatcher.py shows that alone does), as does a worker that
    # finds the message's record ended, or that process's dispatch pass before it stops.
    with running_redis() as redis:
        deployment = Deployment.on(redis, tmp_path / "runs.jsonl")
        worker = start_worker(tmp_path, deployment, "w", "--pool", "prefork", "-c", "4",
                              **NO_RESEND)
        scene = Scene(deployment, worker, tmp_path, key_prefix())
        try:
            ended = await cancel_a_woken_record(scene)
        finally:
            stop_all(scene.webs, [worker])
    assert [r.status.value for r in ended] == ["succeeded"] * 2 + ["cancelled"] + [
        "succeeded"] * 4
    assert not starts(deployment.runs, f"{scene.key}C")  # cancelled unstarted
    assert most_at_once([run for run in read_runs(deployment.runs)
                         if run.key.removeprefix(scene.key) in ("A", "B", "D")]) <= 2


NO_RESEND = {"OFFLOAD_CELERY_RESEND": "3600"}  # no message sent again within the test


async def cancel_a_woken_record(scene: Scene) -> list[TaskRecord]:
    """limited_run A and B run; C and D wait, their messages dropped; blockers X, Y and Z
    keep the other pool processes busy, so the message A's end sends C waits; C is
    cancelled; once the blockers end, D starts. The records of A, B, C, D, X, Y, Z."""
    scene.start_web()
    await scene.submit("limited_run", "A", "B")
    await scene.started("A", "B")
    await scene.submit("limited_run", "C", "D", gate="rest")
    await scene.dropped("C", "D")  # both slots are taken
    await scene.submit("journal_run", "X", "Y", gate="blockers")
    await scene.started("X", "Y")
    await scene.submit("journal_run", "Z", gate="blockers")
    await scene.waiting(1)  # every pool process is busy: Z's message waits
    scene.stop_web()
    scene.open("A")
    await scene.started("Z")  # A's process sent C's message before it took Z's
    assert scene.messages() == 1
    scene.start_web()  # its dispatch pass wakes only a lane's first: C, whose message waits
    await scene.cancel("C")
    scene.stop_web()  # a clean stop: its messages sent first; no web process is left
    scene.open("blockers")
    await scene.started("D")  # in C's place
    scene.open("B")
    scene.open("rest")
    return await all_ended(scene.deployment.store, list(scene.ids.values()))


@dataclass
class Scene:
    """Tasks journaled as ``<key><label>``, each holding until its gate file exists (its
    label's, unless named; else longer than any wait of the test), submitted over HTTP to
    a deployment of one worker and a web process at a time."""

    deployment: Deployment
    worker: Worker
    tmp: Path
    key: str
    ids: dict[str, str] = field(default_factory=dict)
    webs: list[Server] = field(default_factory=list)

    def start_web(self) -> None:
        name = f"web{len(self.webs) + 1}"
        self.webs.append(start_web(self.tmp, self.deployment, name, **NO_RESEND))

    def stop_web(self) -> None:
        finish(self.webs[-1])

    async def submit(self, name: str, *labels: str, gate: str = "") -> None:
        async with self.client() as http:
            for label in labels:
                args = [f"{self.key}{label}", 2 * DEADLINE, str(self.tmp / (gate or label))]
                answer = await http.post("/tasks", json={"name": name, "args": args})
                assert answer.status_code == 202, answer.text
                self.ids[label] = answer.json()["id"]

    async def cancel(self, label: str) -> None:
        async with self.client() as http:
            answer = await http.post(f"/tasks/{self.ids[label]}/cancel")
        assert answer.json()["status"] == "cancelled", answer.text

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.webs[-1].base_url, timeout=CLIENT_TIMEOUT)

    async def started(self, *labels: str) -> None:
        await until(lambda: all(starts(self.deployment.runs, f"{self.key}{label}")
                                for label in labels))

    async def dropped(self, *labels: str) -> None:
        """Until the worker has ended these tasks' messages (Celery logs each)."""
        await until(lambda: all(f"[{self.ids[label]}] succeeded" in self.worker.output()
                                for label in labels))

    def messages(self) -> int:
        return sum(waiting_messages(self.deployment.broker).values())

    async def waiting(self, count: int) -> None:
        await until(lambda: self.messages() == count)

    def open(self, gate: str) -> None:
        (self.tmp / gate).touch()


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(POLL)


async def all_ended(store_url: str, ids: list[str]) -> list[TaskRecord]:
    """The records once every one has ended, read from the store itself (no web process)."""
    store = open_store(store_url)
    await store.open()
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            records = [await store.get(task_id) for task_id in ids]
            found = [r for r in records if r is not None]
            if len(found) == len(ids) and all(r.terminal for r in found):
                return found
            assert time.monotonic() < deadline, [r.status.value for r in found]
            await asyncio.sleep(POLL)
    finally:
        await store.close()

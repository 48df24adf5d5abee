"""Celery mode with RabbitMQ as the broker (``OFFLOAD_CELERY_BROKER=amqp://…``), for real.

A throwaway RabbitMQ node (``tests/rabbitmq_server.py``) carries the messages and a
redis-server keeps the records; one web process (``python -m service``) and one worker
(``celery -A service.celery_app worker --pool prefork -c 1``) use them. One pool process, so
the broker's own order is what the tests see: priorities (queues declared with
``x-max-priority`` 9), a cancel of a queued task, and a message given back to RabbitMQ when
the process running it, or a whole worker, is killed. A restart of RabbitMQ has a node of
its own. Which process ran what comes from the runs journal of ``tests.e2e.durable_tasks``;
what waits with the broker is read from RabbitMQ itself. Nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import amqp
import httpx
import pytest

from service.client import AsyncOffloadClient
from service.models import Status
from service.scaleout.config import AMQP_MAX_PRIORITY, celery_priority
from tests.e2e.durable_tasks import starts
from tests.e2e.helpers import submit, wait_terminal
from tests.e2e.sqlite_helpers import key_prefix, wait_until
from tests.rabbitmq_server import HOST, RabbitMQServer, running_rabbitmq
from tests.redis_server import RedisServer, fresh_prefix, running_redis

from .cluster import (
    KILL_9_CASES,
    Deployment,
    assert_ended_after_kill_9,
    start_web,
    start_worker,
)
from .conftest import CLIENT_TIMEOUT, Cluster

pytestmark = pytest.mark.e2e
DEFAULT_QUEUE = "celery"  # where Offload's messages go (Celery's default queue)
# No copy sent again from the dispatch plan: the counts of waiting messages are exact.
NO_RESEND = {"OFFLOAD_CELERY_RESEND": "3600"}


@pytest.fixture(scope="module")
def rabbitmq() -> Iterator[RabbitMQServer]:
    with running_rabbitmq() as server:
        yield server


@pytest.fixture(scope="module")
def store() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@contextlib.contextmanager
def deployed(tmp: Path, store: RedisServer, rabbitmq: RabbitMQServer, **env: str
             ) -> Iterator[Cluster]:
    """One web process and one worker with a single pool process, on RabbitMQ (a store
    of their own in ``store``), stopped at the end."""
    deployment = Deployment(f"redis://{HOST}:{store.port}/0?prefix={fresh_prefix()}",
                            rabbitmq.url, tmp / "runs.jsonl")
    found = Cluster(deployment, [], [], tmp)
    try:
        found.workers.append(start_worker(tmp, deployment, "amqp", "--pool", "prefork", "-c",
                                          "1", "--prefetch-multiplier", "1", **env))
        found.webs.append(start_web(tmp, deployment, "web1", **env))
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def cluster(store: RedisServer, rabbitmq: RabbitMQServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with deployed(tmp_path_factory.mktemp("celery-amqp"), store, rabbitmq,
                  **NO_RESEND) as found:
        yield found


def waiting_messages(rabbitmq: RabbitMQServer) -> int:
    """Messages ready in Celery's default queue, as RabbitMQ counts them. The queue is
    declared again with Celery's arguments: RabbitMQ refuses (PRECONDITION_FAILED) one that
    exists with other arguments, so an answer also says it has ``x-max-priority`` 9."""
    connection = amqp.Connection(host=f"{HOST}:{rabbitmq.port}", userid="guest",
                                 password="guest", connect_timeout=5)
    connection.connect()
    try:
        declared = connection.channel().queue_declare(
            DEFAULT_QUEUE, durable=True, auto_delete=False,
            arguments={"x-max-priority": AMQP_MAX_PRIORITY})
    finally:
        connection.close()
    assert declared is not None
    return declared[1]


async def started(cluster: Cluster, key: str) -> int:
    """Wait for the task journaled as ``key`` to start; the pid of the process running it."""
    await wait_until(lambda: len(starts(cluster.runs, key)) == 1, f"{key} starts", 30)
    return starts(cluster.runs, key)[0].pid


async def test_each_kind_of_task_runs_on_a_worker_fed_by_rabbitmq(
        cluster: Cluster, rabbitmq: RabbitMQServer) -> None:
    """async, def and process tasks, through the library's client: each is received by
    the worker from RabbitMQ, runs there and succeeds; the web process runs nothing."""
    async with AsyncOffloadClient(cluster.web.base_url) as offload:
        handles = [await offload.submit("add", 2, 3),  # async def
                   await offload.submit("blocking_sleep", 0.01),  # def, in a thread
                   await offload.submit("cpu", 1000)]  # executor="process"
        results = [await handle.result(timeout=20) for handle in handles]
        assert results == [5, 0.01, sum(i * i for i in range(1000))]
        for handle in handles:
            record = await handle.refresh()
            assert (record.status, record.attempts) == (Status.SUCCEEDED, 1)
        stats = await offload.stats()
    assert (stats["runner"], stats["capacity"], stats["running"]) == ("celery", 0, 0)
    log = cluster.workers[0].output()
    assert f"Connected to amqp://guest:**@{HOST}:{rabbitmq.port}//" in log
    for handle, name in zip(handles, ("add", "blocking_sleep", "cpu"), strict=True):
        assert f"Task offload.{name}[{handle.id}] received" in log  # Celery's own line
    assert waiting_messages(rabbitmq) == 0


async def test_a_busy_worker_starts_the_higher_priority_task_first(
        cluster: Cluster, client: httpx.AsyncClient, rabbitmq: RabbitMQServer) -> None:
    """One pool process, a prefetch of one, busy on a blocker: low, normal and high
    priority tasks, submitted in that order, wait in RabbitMQ's queue; once the blocker
    ends, RabbitMQ hands them out high, normal, low."""
    key, gate = key_prefix(), cluster.tmp / f"gate-{key_prefix()}"
    blocker = await submit(client, "journal_run", f"{key}blocker", 60.0, str(gate))
    await started(cluster, f"{key}blocker")
    order = {"low": -5, "normal": 0, "high": 5}
    assert [celery_priority(p, rabbitmq.url) for p in order.values()] == [0, 4, 9]
    tasks = {name: await submit(client, "journal_run", f"{key}{name}", priority=priority)
             for name, priority in order.items()}
    # all three wait with the broker: the worker, busy, takes no more
    await wait_until(lambda: waiting_messages(rabbitmq) == 3, "three messages wait", 10)
    gate.touch()
    for task in (blocker, *tasks.values()):
        assert (await wait_terminal(client, task["id"]))["status"] == "succeeded"
    ran = [run.key.removeprefix(key) for run in starts(cluster.runs, key)]
    assert ran == ["blocker", "high", "normal", "low"]
    assert {run.pid for run in starts(cluster.runs, key)} <= cluster.workers[0].pool_pids()


async def test_a_cancelled_queued_task_never_runs(
        cluster: Cluster, client: httpx.AsyncClient, rabbitmq: RabbitMQServer) -> None:
    """Its message waits in RabbitMQ behind a running task; the cancel ends the record at
    once and its revoke reaches the worker (a broadcast through RabbitMQ); once the worker
    is free the message is consumed and the task never runs, nor blocks the next one."""
    key, gate = key_prefix(), cluster.tmp / f"gate-{key_prefix()}"
    busy = await submit(client, "journal_run", f"{key}busy", 60.0, str(gate))
    await started(cluster, f"{key}busy")
    waiting = await submit(client, "journal_run", f"{key}queued")
    await wait_until(lambda: waiting_messages(rabbitmq) == 1, "its message waits", 10)
    response = await client.post(f"/tasks/{waiting['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    worker = cluster.workers[0]
    await wait_until(lambda: f"Tasks flagged as revoked: {waiting['id']}" in worker.output(),
                     "the worker has the revoke", 30)
    gate.touch()
    assert (await wait_terminal(client, busy["id"]))["status"] == "succeeded"
    after = await submit(client, "journal_run", f"{key}after")  # behind the cancelled one
    assert (await wait_terminal(client, after["id"]))["status"] == "succeeded"
    assert starts(cluster.runs, f"{key}queued") == []
    assert (await wait_terminal(client, waiting["id"]))["status"] == "cancelled"
    assert waiting_messages(rabbitmq) == 0  # consumed, not left behind


@pytest.mark.parametrize(("name", "ending"), KILL_9_CASES)
async def test_kill_9_of_the_process_running_a_task(
        cluster: Cluster, client: httpx.AsyncClient, name: str, ending: tuple[str, int]
        ) -> None:
    """acks_late with reject_on_worker_lost: RabbitMQ delivers the message again to the
    worker's next pool process, and the record decides by the Interrupted rule."""
    key, gate = key_prefix() + name, cluster.tmp / f"gate-{key_prefix()}"
    task = await submit(client, name, key, 60.0, str(gate))
    pid = await started(cluster, key)
    worker = cluster.workers[0]
    assert worker.pool_pids() == {pid}
    os.kill(pid, signal.SIGKILL)
    gate.touch()  # a run after this one ends at once
    ended = await wait_terminal(client, task["id"])
    assert_ended_after_kill_9(cluster.runs, key, pid, ended, ending)
    await wait_until(lambda: len(worker.pool_pids()) == 1, "a new pool process", 30)
    assert "WorkerLostError" in worker.output()  # Celery saw its pool process die
    await wait_until(lambda: worker.output().count(
        f"Task offload.{name}[{task['id']}] received") >= 2, "the message comes again", 30)


async def test_a_worker_killed_outright_gives_its_message_back_to_rabbitmq(
        cluster: Cluster, client: httpx.AsyncClient) -> None:
    """``kill -9`` of a whole worker (every process of it) mid-task: its connection drops,
    RabbitMQ puts the unacknowledged message back in the queue at once (no visibility
    timeout to wait out, as with Redis), and the other worker, once free, takes it: the
    idempotent task runs again there (attempts 2)."""
    key, gate = key_prefix(), cluster.tmp / f"gate-{key_prefix()}"
    first = cluster.workers[0]
    busy = await submit(client, "journal_run", f"{key}busy", 60.0, str(gate))
    await started(cluster, f"{key}busy")  # the first worker's one pool process
    victim = start_worker(cluster.tmp, cluster.deployment, f"victim{key}", "--pool",
                          "prefork", "-c", "1", "--prefetch-multiplier", "1", **NO_RESEND)
    cluster.workers.append(victim)
    task = await submit(client, "idempotent_run", f"{key}task", 60.0, str(gate))
    pid = await started(cluster, f"{key}task")
    assert pid in victim.pool_pids()
    victim.kill()  # SIGKILL to its process group: the worker and its pool process
    gate.touch()
    assert (await wait_terminal(client, busy["id"]))["status"] == "succeeded"
    ended = await wait_terminal(client, task["id"])
    assert (ended["status"], ended["attempts"], ended["result"]) == (
        "succeeded", 2, f"{key}task"), ended
    runs = starts(cluster.runs, f"{key}task")
    assert [run.attempt for run in runs] == [1, 2]
    assert runs[1].pid in first.pool_pids()


async def test_a_rabbitmq_restart_loses_no_task(
        store: RedisServer, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """RabbitMQ stopped and started again (Celery's queue is durable, its messages
    persistent): a task running meanwhile, one whose message waited in the queue, and one
    submitted while the broker was down (a 202: the record is stored and its message waits
    in the dispatch plan until a web process sends it again, here a second later) each
    run, exactly once; the worker connects again by itself. A node of its own, restarted."""
    with running_rabbitmq() as rabbitmq, deployed(tmp_path, store, rabbitmq,
                                                  OFFLOAD_CELERY_RESEND="1") as cluster:
        request.node.funcargs["cluster"] = cluster  # a failure's report shows their logs
        async with httpx.AsyncClient(base_url=cluster.web.base_url,
                                     timeout=CLIENT_TIMEOUT) as client:
            await restart_during_tasks(cluster, client, rabbitmq)


async def restart_during_tasks(cluster: Cluster, client: httpx.AsyncClient,
                               rabbitmq: RabbitMQServer) -> None:
    key, gate = key_prefix(), cluster.tmp / f"gate-{key_prefix()}"
    running = await submit(client, "journal_run", f"{key}running", 60.0, str(gate))
    await started(cluster, f"{key}running")
    waiting = await submit(client, "journal_run", f"{key}waiting")
    # (a resend may have added a copy: workers drop those)
    await wait_until(lambda: waiting_messages(rabbitmq) >= 1, "its message waits", 10)
    await asyncio.to_thread(rabbitmq.stop)  # a clean stop, as a restart does
    during = await submit(client, "journal_run", f"{key}during")
    assert during["status"] == "queued"
    await asyncio.to_thread(rabbitmq.start)
    worker = cluster.workers[0]
    await wait_until(lambda: worker.output().count("Connected to amqp://") >= 2,
                     "the worker is connected again", 60)
    gate.touch()
    for task in (running, waiting, during):
        ended = await wait_terminal(client, task["id"])
        assert (ended["status"], ended["attempts"]) == ("succeeded", 1), ended
    runs = starts(cluster.runs, key)
    assert sorted(run.key.removeprefix(key) for run in runs) == ["during", "running",
                                                                   "waiting"]
    assert worker.process.poll() is None

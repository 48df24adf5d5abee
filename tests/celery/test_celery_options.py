"""Celery worker options with real workers (docs/celery.md, "Worker options" and
"Priorities"): ``-Q``, ``--autoscale``, and Offload's priorities on the Redis transport.

Each test has a redis-server of its own (store and broker), so no message of one test ever
reaches another's worker. Which process ran what, and in which order, comes from the runs
journal of ``tests.e2e.durable_tasks``; what waits with the broker is read from the broker's
own lists. Nothing is timed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import kombu.transport.redis
import pytest

from service.scaleout.config import REDIS_PRIORITY_STEPS, celery_priority, celery_settings
from service.settings import Settings
from tests.e2e.durable_tasks import starts
from tests.e2e.helpers import submit, wait_terminal
from tests.e2e.server import REPO, Server
from tests.e2e.sqlite_helpers import key_prefix, wait_until
from tests.redis_server import running_redis

from .cluster import Deployment, Worker, start_web, start_worker, waiting_messages
from .conftest import CLIENT_TIMEOUT, Cluster

pytestmark = pytest.mark.e2e
ROUTED = {"CELERY_CONFIG_MODULE": "tests.celery.celery_routes"}  # add -> the queue "other"


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A redis-server of the test's own; the workers and web processes the test starts on
    it (``worker``, ``web``) are stopped at the end."""
    tmp = tmp_path_factory.mktemp("celery-options")
    with running_redis() as server:
        found = Cluster(Deployment.on(server, tmp / "runs.jsonl"), [], [], tmp)
        try:
            yield found
        finally:
            found.stop()


# These tests count the messages waiting with the broker: no resend may add one meanwhile
NO_RESEND = {"OFFLOAD_CELERY_RESEND": "3600"}


def worker(cluster: Cluster, name: str, *options: str, **env: str) -> Worker:
    started = start_worker(cluster.tmp, cluster.deployment, name, *options,
                           **{**NO_RESEND, **env})
    cluster.workers.append(started)
    return started


def web(cluster: Cluster, **env: str) -> Server:
    started = start_web(cluster.tmp, cluster.deployment, f"web{len(cluster.webs) + 1}",
                        **{**NO_RESEND, **env})
    cluster.webs.append(started)
    return started


def client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT)


def celery_command(cluster: Cluster, *args: str, **env: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "service.celery_app", *args],
        cwd=REPO, env=cluster.deployment.env(**env), capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


# -- -Q --------------------------------------------------------------------------------


async def test_a_worker_started_with_q_consumes_only_the_queues_it_names(
        cluster: Cluster) -> None:
    """Offload's messages go to Celery's default queue ``celery``; ``task_routes`` in a
    ``CELERY_CONFIG_MODULE`` (web and workers) sends a type elsewhere. A worker started
    with ``-Q other`` runs what goes to ``other`` and leaves ``celery`` alone; one that
    consumes ``celery`` runs what waits there."""
    other = worker(cluster, "other", "-Q", "other", "-c", "1", **ROUTED)
    key = key_prefix()
    async with client(web(cluster, **ROUTED)) as http:
        waiting = await submit(http, "journal_run", f"{key}default")  # to "celery"
        routed = await submit(http, "add", 2, 3)  # to "other", sent after the first
        done = await wait_terminal(http, routed["id"])
        assert (done["status"], done["result"]) == ("succeeded", 5)  # "other" was consumed
        # ... and the message on "celery" is still with the broker, taken by no one
        assert (await http.get(f"/tasks/{waiting['id']}")).json()["status"] == "queued"
        await wait_until(lambda: sum(waiting_messages(cluster.deployment.broker).values()) == 1,
                         "the message waits in the queue celery", 10)
        name = other.hostname.replace("%h", socket.gethostname())
        queues = await asyncio.to_thread(celery_command, cluster, "inspect", "active_queues",
                                         "-j", "-t", "10", "-d", name, **ROUTED)
        assert {name: ["other"]} == {
            worker: [queue["name"] for queue in found] for worker, found in queues.items()}
        assert starts(cluster.runs, key) == []

        default = worker(cluster, "default", "-c", "1", **ROUTED)  # no -Q: "celery"
        ran = await wait_terminal(http, waiting["id"])
        assert ran["status"] == "succeeded", ran
    runs = starts(cluster.runs, key)
    assert len(runs) == 1
    assert runs[0].pid in default.pool_pids()
    assert runs[0].pid not in other.pool_pids()


# -- --autoscale -----------------------------------------------------------------------


async def test_autoscale_grows_the_pool_to_run_two_tasks_at_once(cluster: Cluster) -> None:
    """``--autoscale 2,1`` starts one pool process and grows to two when two tasks wait:
    each task holds until the gate opens, and the test opens it only once both run."""
    auto = worker(cluster, "auto", "--autoscale", "2,1")
    assert len(auto.pool_pids()) == 1  # its minimum, to begin with
    key, gate = key_prefix(), cluster.tmp / "gate-autoscale"
    async with client(web(cluster)) as http:
        tasks = [await submit(http, "journal_run", f"{key}{i}", 60.0, str(gate))
                 for i in range(2)]
        await wait_until(lambda: len(starts(cluster.runs, key)) == 2, "both run at once", 30)
        pids = {run.pid for run in starts(cluster.runs, key)}
        assert len(pids) == 2  # in two pool processes of the one worker
        assert pids <= auto.pool_pids()
        gate.touch()
        for task in tasks:
            assert (await wait_terminal(http, task["id"]))["status"] == "succeeded"


# -- priorities ------------------------------------------------------------------------


REDIS_URLS = ["redis://127.0.0.1:6379/1", "rediss://redis.example:6380/0",
              "sentinel://127.0.0.1:26379", "redis+socket:///run/redis.sock"]


@pytest.mark.parametrize("url", REDIS_URLS)
def test_offload_priorities_fall_into_three_redis_steps_higher_first(url: str) -> None:
    """The Redis transport serves its lower steps first: above 0, 0, below 0 land on three
    different steps, a higher Offload priority on a lower Celery number."""
    high, normal, low = (celery_priority(p, url) for p in (1, 0, -1))
    assert high < normal < low
    for priority in (1, 2, 9, 10**6):
        assert celery_priority(priority, url) == high
    for priority in (-1, -2, -9, -10**6):
        assert celery_priority(priority, url) == low
    # the transport's own steps (each its own list), which Offload relies on as they are
    assert REDIS_PRIORITY_STEPS == kombu.transport.redis.PRIORITY_STEPS
    assert {high, normal, low} < set(REDIS_PRIORITY_STEPS)
    settings = celery_settings(Settings(celery_broker=url))
    assert settings["task_default_priority"] == normal


def test_offload_priorities_on_amqp_are_ordered_the_other_way() -> None:
    """AMQP (``x-max-priority`` 9) serves higher numbers first: -4 and below are 0, 0 is
    4, 5 and above are 9, in order in between."""
    url = "amqp://guest@127.0.0.1:5672//"
    mapped = [celery_priority(p, url) for p in range(-10, 11)]
    assert mapped == sorted(mapped)  # a higher Offload priority, a higher AMQP one
    assert (celery_priority(-10**6, url), celery_priority(-4, url)) == (0, 0)
    assert celery_priority(0, url) == 4
    assert (celery_priority(5, url), celery_priority(10**6, url)) == (9, 9)
    assert celery_priority(1, url) > celery_priority(0, url) > celery_priority(-1, url)
    assert celery_settings(Settings(celery_broker=url))["task_default_priority"] == 4


async def test_a_busy_worker_starts_the_higher_priority_task_first(cluster: Cluster) -> None:
    """One pool process, a prefetch of one, busy on a blocker: low, normal and high
    priority tasks, submitted in that order, wait with the broker on three lists; once the
    blocker ends, they start high, normal, low."""
    one = worker(cluster, "one", "--pool", "prefork", "-c", "1", "--prefetch-multiplier", "1")
    key, gate = key_prefix(), cluster.tmp / "gate-priority"
    async with client(web(cluster)) as http:
        blocker = await submit(http, "journal_run", f"{key}blocker", 60.0, str(gate))
        await wait_until(lambda: len(starts(cluster.runs, f"{key}blocker")) == 1,
                         "the blocker runs", 30)
        order = {"low": -5, "normal": 0, "high": 5}
        tasks = {name: await submit(http, "journal_run", f"{key}{name}", priority=priority)
                 for name, priority in order.items()}
        assert [task["priority"] for task in tasks.values()] == list(order.values())
        # each waits with the broker (the worker takes no more), on a list of its own
        steps = sorted({celery_priority(p, cluster.deployment.broker) for p in order.values()})
        broker = cluster.deployment.broker
        await wait_until(lambda: [waiting_messages(broker)[s] for s in steps] == [1, 1, 1],
                         "one message on each of three priority lists", 10)
        gate.touch()
        for task in (blocker, *tasks.values()):
            assert (await wait_terminal(http, task["id"]))["status"] == "succeeded"
    ran = [run.key.removeprefix(key) for run in starts(cluster.runs, key)]
    assert ran == ["blocker", "high", "normal", "low"]
    assert {run.pid for run in starts(cluster.runs, key)} <= one.pool_pids()

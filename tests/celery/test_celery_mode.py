"""Celery mode with real components: a web process (``python -m service``) and a Celery
worker (``celery -A service.celery_app worker --pool prefork -c 2``) on one redis-server,
store and broker. What ran where comes from the runs journal; nothing waits by sleeping."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery

from tests.e2e.durable_tasks import read_runs, starts
from tests.e2e.helpers import submit, wait_terminal
from tests.e2e.server import REPO
from tests.e2e.sqlite_helpers import key_prefix, timestamp, wait_until
from tests.e2e.sse import events

from .cluster import KILL_9_CASES, assert_ended_after_kill_9
from .conftest import Cluster

pytestmark = pytest.mark.e2e

STEPS = 20  # progress updates reported back to back, with no pause between them


async def started(cluster: Cluster, key: str) -> int:
    """Wait for the task journaled as ``key`` to start; the pid of the process running it."""
    await wait_until(lambda: len(starts(cluster.runs, key)) == 1, f"{key} starts", 30)
    return starts(cluster.runs, key)[0].pid


async def test_add_runs_on_a_worker_and_the_web_runs_nothing(
        cluster: Cluster, client: httpx.AsyncClient) -> None:
    task = await submit(client, "add", 2, 3)
    assert task["status"] == "queued"
    done = await wait_terminal(client, task["id"])
    assert (done["status"], done["result"], done["attempts"]) == ("succeeded", 5, 1)
    stats = (await client.get("/stats")).json()
    assert (stats["runner"], stats["capacity"], stats["running"]) == ("celery", 0, 0)
    log = cluster.workers[0].output()
    assert f"Task offload.add[{task['id']}] received" in log  # Celery's own log line


async def test_progress_streams_over_sse_from_a_worker(cluster: Cluster,
                                                        client: httpx.AsyncClient) -> None:
    """The change feed carries every change's state in order, so a web process's stream of
    a task run on a worker shows each status and each progress update, none lost, merged
    or out of order. The task waits on a gated dependency until the stream is open, so the
    stream starts before any of its changes."""
    key, gate = key_prefix(), cluster.tmp / f"gate-{key_prefix()}sse"
    blocker = await submit(client, "journal_run", f"{key}blocker", 60.0, str(gate))
    task = await submit(client, "progress_run", f"{key}sse", STEPS, 0.0,
                        depends_on=[blocker["id"]])
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(30), client.stream("GET", f"/tasks/{task['id']}/events") as stream:
        async for event in events(stream):
            if not seen:
                gate.touch()  # the stream is open: let the dependency end, the task run
            seen.append(event.task)
    statuses = [t["status"] for t in seen]
    # its start, then one "running" per step; the opening state may come twice (the
    # snapshot, then the event of the change that made it)
    expected = ["waiting", "queued", *["running"] * (STEPS + 1), "succeeded"]
    assert statuses in (expected, ["waiting", *expected]), statuses
    progress = [t["progress"]["current"] for t in seen if t["status"] == "running"
                and t["progress"] is not None]
    assert progress == list(range(1, STEPS + 1)), seen
    assert (seen[-1]["result"], seen[-1]["progress"]["current"]) == (STEPS, STEPS)


async def test_errors_retries_and_delays(cluster: Cluster, client: httpx.AsyncClient) -> None:
    key = key_prefix() + "flaky"
    failing = await submit(client, "fail", "boom")
    flaky = await submit(client, "flaky", key, 2)
    delayed = await submit(client, "add", 1, 1, delay=0.5)
    assert delayed["status"] == "scheduled"
    failed = await wait_terminal(client, failing["id"])
    assert (failed["status"], failed["error"]["type"], failed["error"]["message"]) == (
        "failed", "RuntimeError", "boom")
    retried = await wait_terminal(client, flaky["id"])
    assert (retried["status"], retried["result"], retried["attempts"]) == ("succeeded", 3, 3)
    assert [run.attempt for run in starts(cluster.runs, key)] == [1, 2, 3]
    ran = await wait_terminal(client, delayed["id"])
    assert ran["result"] == 2
    assert timestamp(ran["started_at"]) >= timestamp(ran["created_at"]) + 0.5


async def test_dependants_are_released_to_the_workers(client: httpx.AsyncClient) -> None:
    """depends_on in Celery mode: the dependant is released in the store when its
    dependency succeeds, and a worker is sent it then (not only by the resend sweep)."""
    first = await submit(client, "add", 2, 3)
    response = await client.post("/tasks", json={"name": "add", "args": [1, 1],
                                                 "depends_on": [first["id"]]})
    assert response.status_code == 202, response.text
    second = response.json()
    # One ?wait= (shorter than OFFLOAD_CELERY_RESEND, 60 s): sent on its release, not
    # found later by the resend sweep.
    done = await wait_terminal(client, second["id"])
    assert (done["status"], done["result"]) == ("succeeded", 2)


async def test_a_cancelled_queued_task_never_runs(cluster: Cluster, client: httpx.AsyncClient
                                                  ) -> None:
    key, gate = key_prefix(), cluster.tmp / f"gate-{key_prefix()}"
    busy = [await submit(client, "journal_run", f"{key}busy{i}", 60.0, str(gate))
            for i in range(2)]  # both pool processes, and the worker prefetches no more
    await wait_until(lambda: len(starts(cluster.runs, f"{key}busy")) == 2, "both start", 30)
    waiting = await submit(client, "journal_run", f"{key}queued")
    assert waiting["status"] == "queued"
    response = await client.post(f"/tasks/{waiting['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    gate.touch()
    for task in busy:
        assert (await wait_terminal(client, task["id"]))["status"] == "succeeded"
    after = await submit(client, "journal_run", f"{key}after")  # behind the cancelled one
    assert (await wait_terminal(client, after["id"]))["status"] == "succeeded"
    assert starts(cluster.runs, f"{key}queued") == []
    assert (await wait_terminal(client, waiting["id"]))["status"] == "cancelled"


async def test_cancel_of_a_running_async_task(cluster: Cluster, client: httpx.AsyncClient
                                              ) -> None:
    key = key_prefix() + "async"
    task = await submit(client, "journal_run", key, 60.0, str(cluster.tmp / "never"))
    await started(cluster, key)
    assert (await client.post(f"/tasks/{task['id']}/cancel")).status_code == 202
    ended = await wait_terminal(client, task["id"])
    assert (ended["status"], ended["attempts"]) == ("cancelled", 1)
    assert [run.event for run in read_runs(cluster.runs) if run.key == key] == ["start"]


async def test_cancel_of_a_running_process_task_ends_its_process(
        cluster: Cluster, client: httpx.AsyncClient) -> None:
    key = key_prefix() + "spin"
    task = await submit(client, "spin", key)
    pid = await started(cluster, key)
    assert pid in cluster.workers[0].pool_pids()  # in the pool process itself
    assert (await client.post(f"/tasks/{task['id']}/cancel")).status_code == 202
    assert (await wait_terminal(client, task["id"]))["status"] == "cancelled"
    await wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the process is gone", 30)
    # Celery starts another pool process, and the redelivered message does nothing
    await wait_until(lambda: len(cluster.workers[0].pool_pids()) == 2, "a new pool process", 30)
    again = await submit(client, "add", 1, 2)
    assert (await wait_terminal(client, again["id"]))["result"] == 3
    assert [run.event for run in read_runs(cluster.runs) if run.key == key] == ["start"]


async def test_cancel_reaches_a_running_thread_task(cluster: Cluster, client: httpx.AsyncClient
                                                    ) -> None:
    key = key_prefix() + "thread"
    task = await submit(client, "polite", key)
    await started(cluster, key)
    assert (await client.post(f"/tasks/{task['id']}/cancel")).status_code == 202
    assert (await wait_terminal(client, task["id"]))["status"] == "cancelled"
    assert [run.event for run in read_runs(cluster.runs) if run.key == key] == [
        "start", "saw-cancel"]


async def test_a_thread_task_past_its_timeout_that_returns_keeps_its_pool_process(
        cluster: Cluster, client: httpx.AsyncClient) -> None:
    key = key_prefix() + "polite-timeout"
    task = await submit(client, "polite", key, timeout=0.5)
    pid = await started(cluster, key)
    ended = await wait_terminal(client, task["id"])
    assert (ended["status"], ended["error"]["type"]) == ("failed", "TimeoutError")
    assert [run.event for run in read_runs(cluster.runs) if run.key == key] == [
        "start", "saw-cancel"]  # the soft limit: it saw cancel_requested() and returned
    again = await submit(client, "add", 2, 2)
    assert (await wait_terminal(client, again["id"]))["result"] == 4
    assert pid in cluster.workers[0].pool_pids()  # no hard limit needed: still serving


async def test_a_thread_task_that_ignores_its_timeout_has_its_pool_process_ended(
        cluster: Cluster, client: httpx.AsyncClient) -> None:
    key = key_prefix() + "stubborn"
    task = await submit(client, "stubborn", key, timeout=0.5)
    pid = await started(cluster, key)
    ended = await wait_terminal(client, task["id"])  # OFFLOAD_CELERY_THREAD_GRACE later
    assert (ended["status"], ended["error"]["type"]) == ("failed", "TimeoutError")
    await wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the process is gone", 30)
    await wait_until(lambda: len(cluster.workers[0].pool_pids()) == 2, "a new pool process", 30)
    again = await submit(client, "add", 1, 1)
    assert (await wait_terminal(client, again["id"]))["result"] == 2
    assert [run.event for run in read_runs(cluster.runs) if run.key == key] == ["start"]
    assert (await client.get(f"/tasks/{task['id']}")).json()["status"] == "failed"


async def test_an_async_task_past_its_timeout_fails_and_its_process_serves_on(
        cluster: Cluster, client: httpx.AsyncClient) -> None:
    key = key_prefix() + "async-timeout"
    task = await submit(client, "journal_run", key, 60.0, str(cluster.tmp / "never"),
                        timeout=0.5)
    pid = await started(cluster, key)
    ended = await wait_terminal(client, task["id"])
    assert (ended["status"], ended["error"]["type"]) == ("failed", "TimeoutError")
    assert [run.event for run in read_runs(cluster.runs) if run.key == key] == ["start"]
    again = await submit(client, "add", 3, 3)
    assert (await wait_terminal(client, again["id"]))["result"] == 6
    assert pid in cluster.workers[0].pool_pids()  # cancelled at its await: no process ended


async def test_a_process_task_past_its_timeout_has_its_pool_process_ended(
        cluster: Cluster, client: httpx.AsyncClient) -> None:
    key = key_prefix() + "spin-timeout"
    task = await submit(client, "spin", key, timeout=0.5)
    pid = await started(cluster, key)
    ended = await wait_terminal(client, task["id"])
    assert (ended["status"], ended["error"]["type"]) == ("failed", "TimeoutError")
    await wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the process is gone", 30)
    await wait_until(lambda: len(cluster.workers[0].pool_pids()) == 2, "a new pool process", 30)
    again = await submit(client, "add", 4, 4)
    assert (await wait_terminal(client, again["id"]))["result"] == 8
    assert [run.event for run in read_runs(cluster.runs) if run.key == key] == ["start"]


@pytest.mark.parametrize(("name", "ending"), KILL_9_CASES)
async def test_kill_9_of_the_process_running_a_task(
        cluster: Cluster, client: httpx.AsyncClient, name: str, ending: tuple[str, int]
        ) -> None:
    key, gate = key_prefix() + name, cluster.tmp / f"gate-{key_prefix()}"
    task = await submit(client, name, key, 60.0, str(gate))
    pid = await started(cluster, key)
    os.kill(pid, signal.SIGKILL)
    gate.touch()  # a run after this one ends at once
    ended = await wait_terminal(client, task["id"])
    assert_ended_after_kill_9(cluster.runs, key, pid, ended, ending)


def celery_command(cluster: Cluster, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "service.celery_app", *args],
        cwd=REPO, env=cluster.deployment.env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


async def test_inspect_active_lists_tasks_by_their_offload_id(
        cluster: Cluster, client: httpx.AsyncClient) -> None:
    key, gate = key_prefix() + "inspect", cluster.tmp / f"gate-{key_prefix()}"
    task = await submit(client, "journal_run", key, 60.0, str(gate))
    await started(cluster, key)
    try:
        answer = await asyncio.to_thread(celery_command, cluster, "inspect", "active", "-j",
                                         "-t", "10")
    finally:
        gate.touch()
    active = {entry["id"]: entry for entries in answer.values() for entry in entries}
    # (a message of an earlier test's task may be active too, on its way to a retry)
    assert active[task["id"]]["name"] == "offload.journal_run"
    assert active[task["id"]]["args"] == [task["id"], 0]  # the id and generation: no more
    for task_id, entry in active.items():  # every active Celery task is an Offload task
        assert entry["args"][0] == task_id, entry
    assert (await wait_terminal(client, task["id"]))["status"] == "succeeded"


class MakesADirectory:
    """Unpickled, this would make a directory: proof that a worker unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (self.path,)


async def test_a_pickle_message_is_refused(cluster: Cluster, client: httpx.AsyncClient
                                           ) -> None:
    marker = cluster.tmp / f"unpickled-{key_prefix()}"
    sender = Celery(broker=cluster.deployment.broker, set_as_current=False)
    sender.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    try:
        await asyncio.to_thread(sender.send_task, "offload.add",
                                args=[MakesADirectory(str(marker))], serializer="pickle")
    finally:
        sender.close()
    worker = cluster.workers[0]
    await wait_until(lambda: "Refusing to deserialize untrusted content of type pickle"
                     in worker.output(), "the worker refuses the message", 30)
    assert not marker.exists()
    after = await submit(client, "add", 20, 22)  # and goes on working
    assert (await wait_terminal(client, after["id"]))["result"] == 42
    assert worker.process.poll() is None

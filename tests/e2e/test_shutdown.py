"""Stopping the real server, every way a process manager does, with tasks running and
clients waiting.

SIGTERM to the master (``docker stop``, systemd's ``KillMode=mixed``), to one worker, to the
whole process group (systemd's default ``KillMode=control-group``, ``kill -TERM -- -<pgid>``)
and SIGINT (Ctrl+C reaches the whole group): each takes the graceful path. ``/readyz`` and
new submissions answer 503 while the server drains, a running task that ends within
``OFFLOAD_SHUTDOWN_GRACE`` succeeds, the rest end ``failed`` with type ``Interrupted``, a
``?wait=`` and an event stream open on such a task get that answer, a log line says what
happened, and no traceback is printed. A worker stopped alone is replaced.

The memory store dies with the server, so the server keeps a journal of every status its
store commits (see ``e2e_tasks``), and the tasks of ``durable_tasks`` journal their runs
(which worker ran what) and hold until the test opens their gate: nothing here is timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import CLIENT_TIMEOUT
from .durable_tasks import RUNS_ENV, starts
from .e2e_tasks import JOURNAL_ENV
from .helpers import TERMINAL, alive, submit, worker_pid
from .server import REPO, Server, finish, server_env, spawn, start, wait_ready
from .sqlite_helpers import (
    one_connection_client,
    pinned_pool,
    wait_for_workers,
    wait_until,
)
from .sse import Event, events

pytestmark = pytest.mark.e2e
GRACE = 3.0  # OFFLOAD_SHUTDOWN_GRACE of these servers
MOST_DROPPED = 2  # connections a stopping worker may close unanswered (first_answer)
MARGIN = 5.0  # seconds for Hypercorn to stop, tasks to unwind, the processes to exit
GRACEFUL_TIMEOUT: float = tomllib.loads((REPO / "hypercorn.toml").read_text())[
    "graceful_timeout"]
MODULES = "service.demo,tests.e2e.e2e_tasks,tests.e2e.durable_tasks"


@dataclass(frozen=True)
class Stop:
    signum: signal.Signals
    target: str  # "master", "worker" (the one running the long task) or "group"


STOPS = {
    "SIGTERM-master": Stop(signal.SIGTERM, "master"),
    "SIGTERM-worker": Stop(signal.SIGTERM, "worker"),
    "SIGTERM-group": Stop(signal.SIGTERM, "group"),
    "SIGINT-group": Stop(signal.SIGINT, "group"),  # Ctrl+C in the server's terminal
    "SIGINT-master": Stop(signal.SIGINT, "master"),
}
CASES = [pytest.param(1, name, id=f"1-worker-{name}") for name in STOPS] + [
    pytest.param(2, name, id=f"2-workers-sqlite-{name}") for name in STOPS
    if name != "SIGINT-master"]


@dataclass
class Deployment:
    server: Server
    workers: int
    journal: Path  # every status the store committed (E2E_JOURNAL)
    runs: Path  # every run of a durable_tasks task, with its pid (E2E_RUNS)
    gate: Path  # the quick task ends once this file exists


@pytest.fixture
def deployment(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Deployment]:
    workers: int = request.param
    overrides = {"OFFLOAD_TASK_MODULES": MODULES, "OFFLOAD_SHUTDOWN_GRACE": str(GRACE)}
    if workers > 1:
        overrides["OFFLOAD_STORE"] = f"sqlite:///{tmp_path / 'offload.db'}"
    env = server_env(**overrides)
    env[JOURNAL_ENV] = str(tmp_path / "journal.jsonl")
    env[RUNS_ENV] = str(tmp_path / "runs.jsonl")
    server = spawn(tmp_path, env, "--workers", str(workers), name="doomed")
    try:
        wait_ready(server)
        yield Deployment(server, workers, Path(env[JOURNAL_ENV]), Path(env[RUNS_ENV]),
                         tmp_path / "gate")
    finally:
        if server.process.poll() is None:
            server.kill()


def worker_pids(server: Server) -> set[int]:
    """The live Hypercorn workers of the server: the master's children that multiprocessing
    spawned (not its resource tracker)."""
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == server.pid and b"spawn_main" in cmdline:
            found.add(int(entry))
    return found


def send(stop: Stop, server: Server, worker: int) -> None:
    if stop.target == "master":
        os.kill(server.pid, stop.signum)
    elif stop.target == "worker":
        os.kill(worker, stop.signum)
    else:
        os.killpg(server.pid, stop.signum)  # the server leads a process group of its own


async def first_answer(server: Server, path: str, wanted: int, method: str = "GET"
                       ) -> httpx.Response:
    """Ask on fresh connections until the answer has status ``wanted`` (a draining server
    still accepts connections and answers them). With several workers, a connection may
    be closed unanswered as a worker stops (seen once in CI; the cause is not proven): at
    most ``MOST_DROPPED`` times, the client asks again on another."""
    end = time.monotonic() + GRACE
    dropped = 0
    while True:
        try:
            async with one_connection_client(server) as http:
                response = await http.request(
                    method, path, json={"name": "add", "args": [1, 2]}
                    if method == "POST" else None)
        except httpx.RemoteProtocolError:
            dropped += 1
            if dropped > MOST_DROPPED or time.monotonic() > end:
                raise
        else:
            if response.status_code == wanted or time.monotonic() > end:
                return response
        await asyncio.sleep(0.02)  # polling an HTTP answer, not guessing a duration


def last_saved(journal: Path) -> dict[str, dict[str, Any]]:
    """The last status the server saved of each task, by id."""
    final: dict[str, dict[str, Any]] = {}
    for line in journal.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        final[entry["id"]] = entry
    return final


def interrupted(entry: dict[str, Any] | None) -> bool:
    return (entry is not None and entry["status"] == "failed"
            and entry["error"]["type"] == "Interrupted")


@pytest.mark.parametrize(("deployment", "how"), CASES, indirect=["deployment"])
async def test_every_way_of_stopping_takes_the_graceful_path(
    deployment: Deployment, how: str
) -> None:
    stop, server = STOPS[how], deployment.server
    if deployment.workers > 1:
        await wait_for_workers(server, deployment.workers)
    async with (httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as client,
                httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as poller):
        quick = await submit(client, "journal_run", "quick", 60.0, str(deployment.gate))
        long = await submit(client, "journal_run", "long", 600.0, str(deployment.gate) + "-no")
        delayed = await submit(client, "add", 1, 2, delay=600)
        spinning = await submit(client, "spin_reporting_pid")
        task_pid = await worker_pid(client, spinning["id"])
        await wait_until(lambda: len(starts(deployment.runs)) == 2, "both tasks started")
        (runner,) = (run.pid for run in starts(deployment.runs) if run.key == "long")
        assert runner in worker_pids(server)
        others = worker_pids(server) - {runner}

        # the clients of the long task are connected to the worker that runs it
        async with pinned_pool(server, 2, deployment.workers) as pool:
            streamer, poller = (pinned.http for pinned in pool[runner])
            long_poll = asyncio.create_task(
                poller.get(f"/tasks/{long['id']}", params={"wait": 30}))
            async with streamer.stream("GET", f"/tasks/{long['id']}/events") as stream:
                long_events = events(stream)
                first = await anext(long_events)  # the stream is open: its handler runs
                assert first.task["status"] == "running"
                # the long-poll went out before this stream was opened: it is in flight too

                sent = time.monotonic()
                send(stop, server, runner)
                draining = stop.target != "worker" or deployment.workers == 1
                if draining:  # every worker drains: new connections meet a draining server
                    ready = await first_answer(server, "/readyz", 503)
                    assert ready.status_code == 503, ready.text
                    submitted = await first_answer(server, "/tasks", 503, "POST")
                    assert submitted.status_code == 503, submitted.text
                deployment.gate.touch()  # the quick task ends now, inside the grace
                streamed: list[Event] = [first, *[event async for event in long_events]]
            polled = await long_poll

        if stop.target == "worker":
            await replaced(server, runner, others, deployment.workers)
            assert (await client.get("/readyz")).status_code == 200
            finish(server)  # and the master still stops cleanly
            code = 0
        else:
            code = await asyncio.to_thread(server.wait_exit,
                                           GRACE + GRACEFUL_TIMEOUT + MARGIN)
    took = time.monotonic() - sent

    assert code == 0, f"exit code {code} {took:.1f}s after the signal"
    # what the clients waiting on the long task saw: its end, not a cut connection
    assert polled.status_code == 200, polled.text
    assert interrupted(polled.json()), polled.json()
    assert streamed[-1].kind == "status"
    assert interrupted(streamed[-1].task), streamed[-1].task

    final = last_saved(deployment.journal)
    assert final[quick["id"]]["status"] == "succeeded", final[quick["id"]]
    assert interrupted(final[long["id"]])
    assert interrupted(final[spinning["id"]])
    if deployment.workers == 1:  # the memory store: nothing will ever run it
        assert interrupted(final.get(delayed["id"]))
    else:  # a durable store keeps it for the next start
        assert delayed["id"] not in final or final[delayed["id"]]["status"] not in TERMINAL
    assert not alive(task_pid), f"the process task's worker {task_pid} outlived the server"

    output = server.output()
    assert "Traceback" not in output, output[-4000:]
    assert "new work is refused" in output, output[-4000:]
    said = f"{stop.signum.name}: asking" if stop.target == "master" else stop.signum.name
    assert said in output, output[-4000:]


async def replaced(server: Server, gone: int, others: set[int], workers: int) -> None:
    """Wait until the stopped worker has exited and a new one serves in its place."""
    await wait_until(lambda: gone not in worker_pids(server)
                     and len(worker_pids(server)) == workers, "the worker was replaced")
    new = worker_pids(server) - others
    assert new
    assert gone not in new
    await wait_for_workers(server, workers)


async def test_a_thread_task_that_never_returns_does_not_hold_the_exit(tmp_path: Path) -> None:
    # Threads cannot be killed; they must not keep the stopped process alive either.
    grace = 1.0
    server = start(tmp_path, name="stuck-thread", OFFLOAD_SHUTDOWN_GRACE=str(grace))
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as client:
            stuck = await submit(client, "blocking_sleep", 120.0)
            async with client.stream("GET", f"/tasks/{stuck['id']}/events") as stream:
                first = await anext(events(stream))
            assert first.task["status"] == "running"
            sent = time.monotonic()
            server.terminate()
            code = await asyncio.to_thread(server.wait_exit, GRACEFUL_TIMEOUT + grace + MARGIN)
        took = time.monotonic() - sent
        assert code == 0, f"exit code {code} after {took:.1f}s"
    finally:
        if server.process.poll() is None:
            server.kill()

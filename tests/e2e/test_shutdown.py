"""SIGTERM with tasks running, on the real server.

The memory store dies with the process, so the server of this test keeps a journal of every
record it saves (see ``e2e_tasks``); what a client can see is checked over HTTP as well: a
long-poll and an event stream open at SIGTERM are answered, the server exits in time, cleanly.
"""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import CLIENT_TIMEOUT, E2E_MODULES
from .e2e_tasks import JOURNAL_ENV
from .helpers import TERMINAL, alive, submit, worker_pid
from .server import REPO, Server, start
from .sse import events

pytestmark = pytest.mark.e2e
GRACE = 3.0  # OFFLOAD_SHUTDOWN_GRACE of this server
MARGIN = 3.0  # seconds for Hypercorn to stop, tasks to unwind, the processes to exit
GRACEFUL_TIMEOUT: float = tomllib.loads((REPO / "hypercorn.toml").read_text())[
    "graceful_timeout"]


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal.jsonl"


@pytest.fixture
def doomed(tmp_path: Path, journal: Path) -> Iterator[Server]:
    """A server of its own, which the test stops; killed at teardown if it is still there."""
    server = start(tmp_path, name="doomed", OFFLOAD_TASK_MODULES=E2E_MODULES,
                   OFFLOAD_SHUTDOWN_GRACE=str(GRACE), **{JOURNAL_ENV: str(journal)})
    yield server
    if server.process.poll() is None:
        server.kill()


async def test_sigterm_lets_short_tasks_finish_and_interrupts_the_rest(
    doomed: Server, journal: Path
) -> None:
    async with (httpx.AsyncClient(base_url=doomed.base_url, timeout=CLIENT_TIMEOUT) as client,
                httpx.AsyncClient(base_url=doomed.base_url, timeout=CLIENT_TIMEOUT) as poller):
        quick = await submit(client, "sleep", 2.0)  # ends inside Hypercorn's graceful window
        short = await submit(client, "sleep", GRACEFUL_TIMEOUT + 0.5)  # ends inside the grace
        long = await submit(client, "sleep", 600.0)
        delayed = await submit(client, "add", 1, 2, delay=600)
        spinning = await submit(client, "spin_reporting_pid")
        assert delayed["status"] == "scheduled"

        assert (await poller.get("/healthz")).status_code == 200  # its connection is open
        long_poll = asyncio.create_task(
            poller.get(f"/tasks/{quick['id']}", params={"wait": 30}))
        async with client.stream("GET", f"/tasks/{quick['id']}/events") as stream:
            quick_events = events(stream)
            first = await anext(quick_events)  # the stream is open: its handler runs
            assert first.task["status"] == "running"
            # the long-poll went out before this stream was opened, and the server's loop has
            # answered this stream since: the long-poll is in flight too
            pid = await worker_pid(client, spinning["id"])

            sent, sent_at = time.monotonic(), time.time()
            doomed.terminate()
            streamed = [first, *[event async for event in quick_events]]

        polled = await long_poll
        code = await asyncio.to_thread(doomed.wait_exit, GRACEFUL_TIMEOUT + GRACE + MARGIN)
        took = time.monotonic() - sent

    assert code is not None, f"still running {took:.1f}s after SIGTERM"
    assert code == 0
    assert took <= GRACEFUL_TIMEOUT + GRACE + MARGIN

    # what clients saw: the long-poll and the event stream open at SIGTERM were answered
    assert polled.status_code == 200, polled.text
    assert polled.json()["status"] == "succeeded"
    assert streamed[-1].kind == "status"
    assert streamed[-1].task["status"] == "succeeded"
    assert finished_at(polled.json()) > sent_at, "the quick task was still running at SIGTERM"

    # how every task ended, as the server saved it: nothing left queued, scheduled or running
    final = last_saved(journal)
    assert set(final) >= {t["id"] for t in (quick, short, long, delayed, spinning)}
    assert all(entry["status"] in TERMINAL for entry in final.values()), final
    assert final[quick["id"]]["status"] == "succeeded"
    assert final[short["id"]]["status"] == "succeeded"
    for task in (long, delayed, spinning):
        assert final[task["id"]]["status"] == "failed", final[task["id"]]
        assert final[task["id"]]["error"]["type"] == "Interrupted"

    assert not alive(pid), f"the process task's worker {pid} outlived the server"
    output = doomed.output()
    assert "Traceback" not in output, output[-4000:]


def finished_at(task: dict[str, Any]) -> float:
    return datetime.fromisoformat(task["finished_at"]).timestamp()


def last_saved(journal: Path) -> dict[str, dict[str, Any]]:
    """The last state the server saved of each task, by id."""
    final: dict[str, dict[str, Any]] = {}
    for line in journal.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        final[entry["id"]] = entry
    return final



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

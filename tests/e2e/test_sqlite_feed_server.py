"""Every change of a task reaches the event streams of the other worker (issue 9): the
real server with two Hypercorn workers on one SQLite file, a task that reports its
progress as fast as it can, and a stream on each worker, over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .durable_tasks import starts
from .server import Server
from .sqlite_helpers import (
    WAIT,
    Pinned,
    key_prefix,
    pinned_pool,
    post,
    runs_of,
)
from .sse import Event, events

pytestmark = pytest.mark.e2e
STEPS = 40  # progress updates, all within about one poll interval of the feed


@pytest.fixture(scope="module")
def runs(two_workers: Server) -> Path:
    return runs_of(two_workers)


async def follow(side: Pinned, task_id: str, opened: asyncio.Semaphore) -> list[Event]:
    """Every event of a task's stream, until the server closes it (a deadline: WAIT);
    ``opened`` is released once its first event came."""
    received: list[Event] = []
    async with (asyncio.timeout(WAIT),
                side.http.stream("GET", f"/tasks/{task_id}/events") as stream):
        assert stream.status_code == 200
        side.check(stream)
        async for event in events(stream):
            if not received:
                opened.release()
            received.append(event)
    return received


async def release_when_open(opened: asyncio.Semaphore, streams: int, gate: Path) -> None:
    for _ in range(streams):
        await opened.acquire()
    await asyncio.to_thread(gate.touch)


async def test_a_stream_on_the_other_worker_sees_every_progress_update_in_order(
        two_workers: Server, runs: Path, tmp_path: Path) -> None:
    key, gate, opened = key_prefix(), tmp_path / "gate", asyncio.Semaphore(0)
    async with pinned_pool(two_workers, each=1) as pool:
        sides = tuple(pinned[0] for pinned in pool.values())
        # it waits on a dependency that ends once both streams are open; no pause
        # between its updates
        blocker = await post(sides[0], "journal_run", args=[f"b{key}", WAIT, str(gate)])
        task = await post(sides[0], "progress_run", args=[key, STEPS, 0.0],
                          depends_on=[blocker["id"]])
        streams, _ = await asyncio.gather(
            asyncio.gather(*(follow(side, task["id"], opened) for side in sides)),
            release_when_open(opened, len(sides), gate))
    (run,) = starts(runs, key)
    assert {side.pid for side in sides} - {run.pid}, "one stream is on the other worker"
    for side, received in zip(sides, streams, strict=True):
        where = "here" if side.pid == run.pid else "on the other worker"
        progress = [(e.task["status"], e.task["progress"]["current"],
                     e.task["progress"]["message"]) for e in received if e.kind == "progress"]
        assert progress == [("running", n, f"{key} {n}") for n in range(1, STEPS + 1)], where
        statuses = [e.task["status"] for e in received if e.kind == "status"]
        # A stream may open before its worker has read the feed entry of the submit made on
        # the other worker: that entry then repeats the opening state, once.
        if statuses[:2] == ["waiting", "waiting"]:
            del statuses[0]
        assert statuses == ["waiting", "queued", "running", "succeeded"], (where, statuses)
        running = next(e for e in received if e.task["status"] == "running")
        assert (running.kind, running.task["progress"], running.task["result"]) == (
            "status", None, None), where
        last = received[-1]
        assert (last.kind, last.task["status"], last.task["result"]) == (
            "status", "succeeded", STEPS), where
        assert last.task["progress"]["current"] == STEPS, where

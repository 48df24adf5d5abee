"""The real server with two Hypercorn workers on one SQLite file, driven over HTTP.

Each test knows which worker answers which request: it pins fresh connections to worker
processes (see ``sqlite_helpers``), and it knows which worker ran which task from the runs
journal the tasks of ``durable_tasks`` write. So "a cancel reaches a task run by the other
worker" is checked as exactly that, not as a coin toss.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .durable_tasks import most_at_once, read_runs, starts
from .helpers import is_terminal
from .server import Server
from .sqlite_helpers import (
    WAIT,
    Pinned,
    key_prefix,
    one_connection_client,
    other,
    pinned_clients,
    pinned_pool,
    post,
    runs_of,
    timestamp,
    wait_for_workers,
    wait_on,
    wait_until,
)
from .sse import Event, events

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runs(two_workers: Server) -> Path:
    return runs_of(two_workers)


async def test_any_worker_answers_get_wait_list_stats_and_delete(two_workers: Server) -> None:
    count = 60
    ids: list[str] = []
    async with pinned_clients(two_workers) as pinned:
        sides = list(pinned.values())
        for i in range(count):  # half the submissions reach each worker
            ids.append((await post(sides[i % 2], "add", args=[i, 1000]))["id"])
        for i, task_id in enumerate(ids):  # each read on the worker that did not accept it
            done = await wait_on(sides[(i + 1) % 2], task_id)
            assert (done["status"], done["result"]) == ("succeeded", i + 1000), done
            plain = sides[i % 2].check(await sides[i % 2].http.get(f"/tasks/{task_id}"))
            assert plain.json() == done

    # every page on a fresh connection of the worker that did not make its cursor
    listed: list[str] = []
    cursor: str | None = None
    made_by: int | None = None
    pages = 0
    while True:
        async with pinned_clients(two_workers) as pinned:
            reader = next(iter(pinned.values())) if made_by is None else other(pinned, made_by)
            params: dict[str, Any] = {"name": "add", "limit": 7}
            if cursor is not None:
                params["cursor"] = cursor
            page = reader.check(await reader.http.get("/tasks", params=params))
        assert page.status_code == 200, page.text
        pages += 1
        listed.extend(item["id"] for item in page.json()["items"])
        cursor, made_by = page.json()["next_cursor"], reader.pid
        if cursor is None:
            break
    assert pages >= count // 7
    duplicates = [task_id for task_id, n in Counter(listed).items() if n > 1]
    assert not duplicates, f"listed more than once: {duplicates}"
    assert set(ids) <= set(listed), "a task is missing from the pages"
    assert [i for i in listed if i in set(ids)] == ids[::-1], "newest first"

    async with pinned_clients(two_workers) as pinned:
        stats = {pid: p.check(await p.http.get("/stats")).json() for pid, p in pinned.items()}
        first, second = stats.values()
        assert first["counts"] == second["counts"], stats
        assert first["counts"]["succeeded"] >= count
        sides = list(pinned.values())
        for i, task_id in enumerate(ids):
            gone = sides[i % 2].check(await sides[i % 2].http.delete(f"/tasks/{task_id}"))
            assert gone.status_code == 204, gone.text
        for side in sides:
            for task_id in ids[:10]:
                assert side.check(await side.http.get(f"/tasks/{task_id}")).status_code == 404
                again = side.check(await side.http.delete(f"/tasks/{task_id}"))
                assert again.status_code == 404


async def test_a_cancel_reaches_a_running_task_on_the_other_worker(
    two_workers: Server, runs: Path
) -> None:
    prefix = key_prefix()
    async with pinned_clients(two_workers) as pinned:
        sides = list(pinned.values())
        tasks = [await post(sides[i % 2], "journal_run", args=[f"{prefix}{i}", 30.0])
                 for i in range(8)]
    await wait_until(lambda: len(starts(runs, prefix)) == len(tasks), "every task started")
    runner = {run.id: run.pid for run in starts(runs, prefix)}
    waits = []
    async with pinned_clients(two_workers) as pinned:  # fresh: the others may have idled out
        assert set(runner.values()) == set(pinned), f"both workers hold some: {runner}"
        for task in tasks:  # each cancel, and its wait, on the worker that does not run it
            side = other(pinned, runner[task["id"]])
            busy = side.check(await side.http.delete(f"/tasks/{task['id']}"))
            assert busy.status_code == 409, busy.text  # it runs, over there
            cancel = side.check(await side.http.post(f"/tasks/{task['id']}/cancel"))
            assert cancel.status_code == 202, cancel.text
            assert cancel.json()["cancel_requested"] is True
            sent = time.monotonic()
            done = await wait_on(side, task["id"], wait=10)
            waits.append(time.monotonic() - sent)
            assert done["status"] == "cancelled", done
            for peer in pinned.values():
                again = peer.check(await peer.http.post(f"/tasks/{task['id']}/cancel"))
                assert again.status_code == 409, again.text
    assert max(waits) < 3.0, f"a cancel took {max(waits):.2f}s to end a task elsewhere"
    assert not [r for r in read_runs(runs) if r.key.startswith(prefix) and r.event == "end"]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def test_waiters_wake_for_tasks_finished_by_the_other_worker(
    two_workers: Server, runs: Path
) -> None:
    prefix = key_prefix()
    rounds, at_once = 5, 10
    seen: list[tuple[str, int, float, float, float]] = []  # key, waiter's worker, sent,
    #                                                         answered, the task's finished_at

    async def one(key: str, waiters: list[Pinned]) -> None:
        task = await post(waiters[0], "journal_run", args=[key, 0.6])

        async def wait(side: Pinned) -> None:
            sent = time.time()
            done = await wait_on(side, task["id"])
            answered = time.time()
            assert done["status"] == "succeeded", done
            seen.append((key, side.pid, sent, answered, timestamp(done["finished_at"])))

        await asyncio.gather(*(wait(side) for side in waiters))

    for r in range(rounds):  # each task has a waiter on each worker: one of them is elsewhere
        async with pinned_pool(two_workers, each=at_once) as pool:
            await asyncio.gather(*(one(f"{prefix}{r}-{i}", list(waiters))
                                   for i, waiters in enumerate(zip(*pool.values(),
                                                                   strict=True))))

    runner = {run.key: run.pid for run in starts(runs, prefix)}
    assert len(runner) == rounds * at_once
    waited = [(pid != runner[key], answered - finished)
              for key, pid, sent, answered, finished in seen if sent < finished]
    elsewhere = [delay for cross, delay in waited if cross]
    here = [delay for cross, delay in waited if not cross]
    print(f"\nwake-up of a ?wait= after a task ends on the other worker: n={len(elsewhere)} "
          f"p50={statistics.median(elsewhere) * 1000:.1f} ms "
          f"p99={percentile(elsewhere, 0.99) * 1000:.1f} ms "
          f"max={max(elsewhere) * 1000:.1f} ms; on the same worker: n={len(here)} "
          f"p50={statistics.median(here) * 1000:.1f} ms")
    assert len(elsewhere) >= rounds * at_once // 2, "most waiters were waiting before the end"
    assert max(elsewhere) < 2.0, f"a waiter woke {max(elsewhere):.2f}s after the end"


async def test_event_streams_on_either_worker_follow_a_task_run_by_one_of_them(
    two_workers: Server, runs: Path
) -> None:
    prefix = key_prefix()
    steps, count = 5, 3

    async def follow(side: Pinned, task_id: str) -> list[Event]:
        async with (asyncio.timeout(WAIT),
                    side.http.stream("GET", f"/tasks/{task_id}/events") as stream):
            assert stream.status_code == 200
            side.check(stream)
            return [event async for event in events(stream)]  # until the server closes it

    async def one(key: str, sides: tuple[Pinned, ...]) -> None:
        # delayed: both streams are open before it starts
        task = await post(sides[0], "progress_run", args=[key, steps, 0.15], delay=1.0)
        streams = await asyncio.gather(*(follow(side, task["id"]) for side in sides))
        (run,) = starts(runs, key)
        assert {side.pid for side in sides} - {run.pid}, "one stream is on the other worker"
        for side, received in zip(sides, streams, strict=True):
            last = received[-1]
            assert (last.kind, last.task["status"]) == ("status", "succeeded"), received
            assert last.task["result"] == steps
            assert last.task["progress"]["current"] == steps, "the end carries the last step"
            assert not [e for e in received[:-1] if is_terminal(e)], "nothing after the end"
            progress = [e.task["progress"]["current"] for e in received if e.kind == "progress"]
            assert progress, f"no progress event on the stream of worker {side.pid}"
            where = "here" if side.pid == run.pid else "on the other worker"
            print(f"\nstream {where}: progress {progress} of {steps} steps")
            assert progress == sorted(set(progress)), f"progress went back: {progress}"
            assert received[0].task["status"] == "scheduled", "opened before it started"

    async with pinned_pool(two_workers, each=count) as pool:
        await asyncio.gather(*(one(f"{prefix}{i}", sides)
                               for i, sides in enumerate(zip(*pool.values(), strict=True))))


async def test_work_spreads_across_workers_and_each_task_runs_exactly_once(
    two_workers: Server, runs: Path
) -> None:
    prefix = key_prefix()
    count, clients = 200, 8
    ids: list[str] = []

    async def submitter(c: int) -> None:
        async with one_connection_client(two_workers) as http:  # a fresh connection each
            for i in range(c, count, clients):
                response = await http.post("/tasks", json={
                    "name": "journal_run", "args": [f"{prefix}{i}", 0.05]})
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])

    await asyncio.gather(*(submitter(c) for c in range(clients)))

    async def settle(chunk: list[str]) -> None:
        async with one_connection_client(two_workers) as http:
            for task_id in chunk:
                done = (await http.get(f"/tasks/{task_id}", params={"wait": WAIT})).json()
                assert (done["status"], done["attempts"]) == ("succeeded", 1), done

    await asyncio.gather(*(settle(ids[c::clients]) for c in range(clients)))
    journal = [r for r in read_runs(runs) if r.key.startswith(prefix)]
    started = Counter(r.key for r in journal if r.event == "start")
    ended = Counter(r.key for r in journal if r.event == "end")
    assert started == ended == Counter(f"{prefix}{i}" for i in range(count)), "exactly once"
    per_worker = Counter(r.pid for r in journal if r.event == "start")
    workers = await wait_for_workers(two_workers, 2)
    print(f"\nruns per worker: {dict(per_worker)}")
    assert set(per_worker) == workers, f"both workers ran some: {dict(per_worker)}"


async def test_one_idempotency_key_makes_one_task_across_workers(two_workers: Server) -> None:
    body = {"name": "add", "args": [2, 3]}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    async with pinned_pool(two_workers, each=10) as pool:  # 10 connections to each worker
        sides = [side for pinned in pool.values() for side in pinned]
        answers = await asyncio.gather(*(
            side.http.post("/tasks", json=body, headers=headers) for side in sides))
        for side, answer in zip(sides, answers, strict=True):
            side.check(answer)
    codes = Counter(answer.status_code for answer in answers)
    assert codes == {202: 1, 200: 19}, codes
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert sorted(Counter(side.pid for side in sides).values()) == [10, 10]


async def test_a_type_limit_of_two_holds_across_workers(two_workers: Server, runs: Path) -> None:
    prefix = key_prefix()
    async with pinned_clients(two_workers) as pinned:
        sides = list(pinned.values())
        tasks = [await post(sides[i % 2], "limited_run", args=[f"{prefix}{i}", 0.3])
                 for i in range(10)]
        for i, task in enumerate(tasks):
            done = await wait_on(sides[i % 2], task["id"])
            assert done["status"] == "succeeded", done
    journal = [r for r in read_runs(runs) if r.key.startswith(prefix)]
    assert len(journal) == 2 * len(tasks), "each ran once, start to end"
    peak = most_at_once(journal)
    print(f"\nlimited_run (concurrency=2): at most {peak} at once; runs per worker: "
          f"{dict(Counter(r.pid for r in journal if r.event == 'start'))}")
    assert peak <= 2, f"{peak} tasks of a type limited to 2 ran at once"

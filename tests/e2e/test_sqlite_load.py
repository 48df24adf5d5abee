"""Several Hypercorn workers on one SQLite file, each test with a server of its own: the queue
bound holds across workers, and a crowd of clients never meets "database is locked"."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from .durable_tasks import starts
from .helpers import TERMINAL
from .sqlite_helpers import (
    CLIENT_TIMEOUT,
    WAIT,
    key_prefix,
    pinned_clients,
    post,
    serving,
    start_sqlite,
    wait_for_workers,
    wait_on,
    wait_until,
)

pytestmark = pytest.mark.e2e
LOAD_SECONDS = 4.0
CLIENTS = 64


async def test_the_queue_bound_holds_across_workers(tmp_path: Path) -> None:
    runs, gate = tmp_path / "runs.jsonl", tmp_path / "gate"
    server = start_sqlite(tmp_path, tmp_path / "offload.db", runs, "--workers", "2",
                          name="bounded", OFFLOAD_MAX_QUEUE="5", OFFLOAD_MAX_CONCURRENCY="1")
    with serving(server):
        await wait_for_workers(server, 2)
        async with pinned_clients(server) as pinned:
            sides = list(pinned.values())
            # each worker's one slot is busy until the gate opens
            held = [await post(side, "journal_run", args=[f"held-{i}", 60.0, str(gate)])
                    for i, side in enumerate(sides)]
        await wait_until(lambda: len(starts(runs, "held-")) == 2, "both held tasks run")
        async with pinned_clients(server) as pinned:  # fresh: the others may have idled out
            sides = list(pinned.values())
            assert {run.pid for run in starts(runs, "held-")} == set(pinned)
            queued = [await post(sides[i % 2], "add", args=[i, i]) for i in range(5)]
            assert {task["status"] for task in queued} == {"queued"}
            for side in sides:  # five wait, whichever worker took them: a sixth is refused
                full = side.check(await side.http.post("/tasks", json={
                    "name": "add", "args": [0, 0]}))
                assert full.status_code == 429, full.text
                assert int(full.headers["Retry-After"]) >= 1
                delayed = side.check(await side.http.post("/tasks", json={
                    "name": "add", "args": [0, 0], "delay": 60}))
                assert delayed.status_code == 429, delayed.text
                stats = side.check(await side.http.get("/stats")).json()
                assert (stats["queue_depth"], stats["running"]) == (5, 1), stats

            gate.touch()
            for i, task in enumerate(held + queued):
                done = await wait_on(sides[i % 2], task["id"])
                assert done["status"] == "succeeded", done
            assert (await post(sides[0], "add", args=[1, 1]))["status"] in {"queued", "running"}


async def test_no_database_is_locked_with_four_workers_and_64_clients(tmp_path: Path) -> None:
    server = start_sqlite(tmp_path, tmp_path / "offload.db", tmp_path / "runs.jsonl",
                          "--workers", "4", name="load")
    prefix = key_prefix()
    answers: Counter[tuple[str, int]] = Counter()
    accepted: list[str] = []
    with serving(server):
        await wait_for_workers(server, 4)
        deadline = time.monotonic() + LOAD_SECONDS

        async def client(n: int) -> None:
            rng = random.Random(n)
            mine: list[str] = []
            async with httpx.AsyncClient(base_url=server.base_url,
                                         timeout=CLIENT_TIMEOUT) as http:
                while time.monotonic() < deadline:
                    op, response = await one_request(http, rng, mine, f"{prefix}{n}")
                    answers[op, response.status_code] += 1
                    if response.status_code == 202 and op.startswith("submit"):
                        mine.append(response.json()["id"])
            accepted.extend(mine)

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        took = time.monotonic() - deadline + LOAD_SECONDS
        print(f"\n{sum(answers.values())} requests in {took:.1f}s from {CLIENTS} clients "
              f"on 4 workers: {dict(sorted(answers.items()))}")

        async def settle(chunk: list[str]) -> None:
            async with httpx.AsyncClient(base_url=server.base_url,
                                         timeout=CLIENT_TIMEOUT) as http:
                for task_id in chunk:
                    response = await http.get(f"/tasks/{task_id}", params={"wait": WAIT})
                    assert response.status_code == 200, response.text
                    assert response.json()["status"] in TERMINAL, response.json()

        await asyncio.gather(*(settle(accepted[c::16]) for c in range(16)))

    failed = {key: n for key, n in answers.items() if key[1] >= 500}
    assert not failed, f"server errors: {failed}"
    unexpected = {key: n for key, n in answers.items()
                  if key[1] not in {200, 202} and key != ("cancel", 409)}
    assert not unexpected, f"unexpected answers: {unexpected}"
    assert answers["cancel", 202] > 0, "some cancels reached unfinished tasks"
    output = server.output()
    assert "database is locked" not in output.lower(), output[-4000:]
    errors = [line for line in output.splitlines() if "[ERROR]" in line or "Traceback" in line]
    assert not errors, "\n".join(errors[:20])


async def one_request(http: httpx.AsyncClient, rng: random.Random, mine: list[str],
                      key: str) -> tuple[str, httpx.Response]:
    """One request of a client of the load test, picked at random."""
    roll = rng.random()
    if not mine:  # first a task that runs for about as long as the load: one to cancel
        return "submit progress", await http.post("/tasks", json={
            "name": "progress_run", "args": [key, 40, 0.1]})
    if roll < 0.25:
        body: dict[str, Any] = {"name": "add", "args": [rng.randrange(100), 1]}
        if rng.random() < 0.2:
            body["delay"] = rng.uniform(0.05, 0.5)
        return "submit", await http.post("/tasks", json=body)
    if roll < 0.45:
        return "submit progress", await http.post("/tasks", json={
            "name": "progress_run", "args": [key, 4, rng.uniform(0.01, 0.5)]})
    if roll < 0.6:
        target = mine[0] if rng.random() < 0.3 else mine[-1]
        return "cancel", await http.post(f"/tasks/{target}/cancel")
    if roll < 0.75:
        params: dict[str, Any] = {"limit": rng.choice([10, 50, 200])}
        if rng.random() < 0.5:
            params["status"] = rng.choice(["running", "queued", "succeeded", "cancelled"])
        return "list", await http.get("/tasks", params=params)
    return "get", await http.get(f"/tasks/{rng.choice(mine)}")

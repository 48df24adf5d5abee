"""A rate limit on real servers: two Hypercorn workers on one SQLite file (or two servers
on one Redis), a type limited to 5 starts a second, 30 tasks submitted at once through
both.

Each worker may run only 3 tasks at once (OFFLOAD_MAX_CONCURRENCY is per worker), so the
5 starts a second allows are more than one worker can take: both start tasks of the type,
and the limit holds only if they count each other's starts. From the tasks' ``started_at``
(as the API shows them), no window of one second holds more than 5 starts.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis_server import fresh_prefix, running_redis

from .server import Server, server_env, spawn, wait_ready
from .sqlite_helpers import (
    CLIENT_TIMEOUT,
    Pinned,
    pinned_clients,
    serving,
    start_sqlite,
    wait_for_workers,
)

pytestmark = pytest.mark.e2e

LIMIT, PERIOD = 5, timedelta(seconds=1)
TASKS = 30
HOLD = 0.3  # seconds each task runs: with 3 at once, one worker could start 10 a second
REFUSAL_DEADLINE = 30.0  # seconds; a refusing server is gone in about one


def most_in_a_window(starts: list[datetime]) -> int:
    """The most starts any half-open window [t, t + 1 s) holds."""
    return max(sum(1 for other in starts if start <= other < start + PERIOD)
               for start in starts)


async def submit_half(pinned: Pinned) -> list[str]:
    response = pinned.check(await pinned.http.post("/tasks/batch", json=HALF))
    assert response.status_code == 202, response.text
    return [item["id"] for item in response.json()["items"]]


HALF = {"tasks": [{"name": "limited_call", "args": [HOLD]}] * (TASKS // 2)}


async def ended(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    async with asyncio.timeout(120):
        while True:  # each ?wait= holds until the task ends (or 20 s pass)
            response = await http.get(f"/tasks/{task_id}", params={"wait": 20})
            assert response.status_code == 200, response.text
            task: dict[str, Any] = response.json()
            if task["status"] in ("succeeded", "failed", "cancelled"):
                return task


def test_two_workers_keep_one_rate_limit(tmp_path: Path) -> None:
    server = start_sqlite(tmp_path, tmp_path / "offload.db", tmp_path / "runs.jsonl",
                          "--workers", "2", OFFLOAD_MAX_CONCURRENCY="3",
                          OFFLOAD_TASK_MODULES="service.demo,tests.e2e.rate_tasks")
    with serving(server):
        asyncio.run(wait_for_workers(server, 2))
        tasks = asyncio.run(_run_all(server))
    check_limit_held(tasks)


def check_limit_held(tasks: list[dict[str, Any]]) -> None:
    assert len(tasks) == TASKS
    assert [t["status"] for t in tasks] == ["succeeded"] * TASKS
    assert all(t["attempts"] == 1 for t in tasks)  # held back in the queue, never failed
    starts = [datetime.fromisoformat(t["started_at"]) for t in tasks]
    assert most_in_a_window(starts) <= LIMIT  # reaching it depends on the machine's load
    assert len({t["result"] for t in tasks}) == 2  # both processes started tasks of the type


def test_two_servers_on_one_redis_keep_one_rate_limit(tmp_path: Path) -> None:
    with running_redis() as redis:
        env = server_env(OFFLOAD_STORE=f"{redis.url}?prefix={fresh_prefix()}",
                         OFFLOAD_MAX_CONCURRENCY="3", OFFLOAD_SHUTDOWN_GRACE="2",
                         OFFLOAD_TASK_MODULES="service.demo,tests.e2e.rate_tasks")
        first = spawn(tmp_path, env, name="first")
        with serving(first):
            wait_ready(first)
            second = spawn(tmp_path, env, name="second")
            with serving(second):
                wait_ready(second)
                check_limit_held(asyncio.run(_run_on_two(first, second)))


async def _run_on_two(first: Server, second: Server) -> list[dict[str, Any]]:
    async with (httpx.AsyncClient(base_url=first.base_url, timeout=CLIENT_TIMEOUT) as one,
                httpx.AsyncClient(base_url=second.base_url, timeout=CLIENT_TIMEOUT) as two):
        answers = await asyncio.gather(one.post("/tasks/batch", json=HALF),
                                       two.post("/tasks/batch", json=HALF))
        assert [a.status_code for a in answers] == [202, 202], answers[0].text
        ids = [item["id"] for answer in answers for item in answer.json()["items"]]
        return list(await asyncio.gather(*(ended(one, task_id) for task_id in ids)))


async def _run_all(server: Server) -> list[dict[str, Any]]:
    async with pinned_clients(server) as pinned:
        first, second = pinned.values()
        halves = await asyncio.gather(submit_half(first), submit_half(second))
    ids = [task_id for half in halves for task_id in half]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http:
        return list(await asyncio.gather(*(ended(http, task_id) for task_id in ids)))


def test_a_bad_rate_limit_setting_refuses_to_start(tmp_path: Path) -> None:
    bad_value = spawn(tmp_path, server_env(OFFLOAD_RATE_LIMITS='{"add": "10/min"}'),
                      name="bad-rate")
    code, output = refused(bad_value)
    assert code == 2, f"exit code {code}:\n{output[-4000:]}"
    assert "OFFLOAD_RATE_LIMITS: task 'add': rate_limit must be 'N/s'" in output
    unknown = spawn(tmp_path, server_env(OFFLOAD_RATE_LIMITS='{"nope": "10/m"}'),
                    name="unknown-rate")
    code, output = refused(unknown)
    assert code not in (None, 0), f"exit code {code}:\n{output[-4000:]}"
    assert "OFFLOAD_RATE_LIMITS: no task type is registered as 'nope'" in output


def refused(server: Server) -> tuple[int | None, str]:
    """The exit code of a server that should refuse to start (None, and killed, if it did
    not exit in time), and its output."""
    code = server.wait_exit(REFUSAL_DEADLINE)
    if code is None:
        server.kill()
    return code, server.output()

"""Real servers on a real redis-server: ``python -m service --workers 2`` runs each task once,
and the tasks of a server killed with ``kill -9`` are taken over by a live one after their
lease, by the interruption rule.

Which process ran what, and how often, comes from the runs journal of ``durable_tasks``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis_server import RedisServer, fresh_prefix, running_redis

from .durable_tasks import RUNS_ENV, starts, starts_by_key
from .helpers import submit, wait_terminal
from .server import Server, server_env, spawn, wait_ready
from .sqlite_helpers import CLIENT_TIMEOUT, MODULES, group_pids, serving, wait_until

pytestmark = pytest.mark.e2e
TASKS = 50


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def start_on_redis(tmp: Path, url: str, runs: Path, *args: str, name: str,
                   **overrides: str) -> Server:
    env = server_env(OFFLOAD_STORE=url, OFFLOAD_TASK_MODULES=MODULES,
                     OFFLOAD_SHUTDOWN_GRACE="2", **overrides)
    env[RUNS_ENV] = str(runs)
    server = spawn(tmp, env, *args, name=name)
    wait_ready(server)
    return server


async def test_two_workers_run_every_task_once(tmp_path: Path, redis: RedisServer) -> None:
    runs = tmp_path / "runs.jsonl"
    url = f"{redis.url}?prefix={fresh_prefix()}"
    server = start_on_redis(tmp_path, url, runs, "--workers", "2", name="two")
    with serving(server):
        processes = group_pids(server)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT,
                                     limits=httpx.Limits(max_connections=8)) as http:
            tasks = await asyncio.gather(*(submit(http, "journal_run", f"t{i}")
                                           for i in range(TASKS)))
            ends = await asyncio.gather(*(wait_terminal(http, task["id"]) for task in tasks))
        assert [(end["status"], end["attempts"], end["result"]) for end in ends] == [
            ("succeeded", 1, f"t{i}") for i in range(TASKS)]
        by_key = starts_by_key(runs, "t")
        assert sorted(by_key) == sorted(f"t{i}" for i in range(TASKS))
        assert all(len(started) == 1 for started in by_key.values())
        assert {started[0].pid for started in by_key.values()} <= processes
        assert server.output().count("Running on") == 2  # two workers served


async def get_on(server: Server, task_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http:
        return await wait_terminal(http, task_id)


async def test_a_killed_server_s_tasks_move_to_the_live_one(tmp_path: Path,
                                                           redis: RedisServer) -> None:
    runs, gate = tmp_path / "runs.jsonl", tmp_path / "gate"
    url = f"{redis.url}?prefix={fresh_prefix()}"
    a = start_on_redis(tmp_path, url, runs, name="a", OFFLOAD_LEASE="2")
    with serving(a):
        async with httpx.AsyncClient(base_url=a.base_url, timeout=CLIENT_TIMEOUT) as http:
            again = await submit(http, "idempotent_run", "k-idem", 60.0, str(gate))
            once = await submit(http, "journal_run", "k-once", 60.0, str(gate))
        await wait_until(lambda: len(starts(runs, "k-")) == 2, "A runs both tasks")
        a_pids = group_pids(a)
        b = start_on_redis(tmp_path, url, runs, name="b", OFFLOAD_LEASE="2")
        with serving(b):
            b_pids = group_pids(b)
            a.kill()
            gate.touch()  # a re-run ends at once
            rerun = await get_on(b, again["id"])
            assert (rerun["status"], rerun["attempts"]) == ("succeeded", 2), rerun
            first, second = starts(runs, "k-idem")
            assert first.pid in a_pids
            assert second.pid in b_pids
            cut = await get_on(b, once["id"])
            assert (cut["status"], cut["attempts"]) == ("failed", 1), cut
            assert cut["error"]["type"] == "Interrupted"
            assert len(starts(runs, "k-once")) == 1

"""Flower, Celery's monitor, started for real beside a Celery-mode deployment: it shows an
Offload task by its Offload id, as ``offload.<name>``, with its state.

The worker sends task events (``-E``), as Flower needs. Flower's API answers without a
login only with ``FLOWER_UNAUTHENTICATED_API=true`` (it listens on 127.0.0.1 here).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import submit, wait_terminal
from tests.e2e.server import REPO, free_port
from tests.redis_server import RedisServer

from .cluster import Deployment, running, start_worker
from .conftest import CLIENT_TIMEOUT

pytestmark = pytest.mark.e2e
READY_DEADLINE = 60.0  # seconds for Flower to answer (imports on a busy machine)
SEEN_DEADLINE = 30.0  # seconds for Flower to show a task's end, from the worker's events


@contextlib.contextmanager
def running_flower(tmp: Path, deployment: Deployment) -> Iterator[str]:
    """``celery -A service.celery_app flower`` on a free loopback port; its base URL."""
    port = free_port()
    log_path = tmp / "flower.log"
    env = deployment.env()
    env["FLOWER_UNAUTHENTICATED_API"] = "true"
    command = [sys.executable, "-m", "celery", "-A", "service.celery_app", "flower",
               "--address=127.0.0.1", f"--port={port}"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, url, log_path)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_DEADLINE
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthcheck", timeout=5).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Flower did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.1)  # polling a starting server's health check


async def shown_ended(flower: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """Flower's view of the task once it shows the task's end (it learns from events)."""
    deadline = time.monotonic() + SEEN_DEADLINE
    while True:
        response = await flower.get(f"/api/task/info/{task_id}")
        if response.status_code == 200:
            info: dict[str, Any] = response.json()
            if info.get("state") == "SUCCESS":
                return info
        assert time.monotonic() < deadline, f"Flower never showed {task_id} ended"
        await asyncio.sleep(0.05)  # polling Flower's view, as wait_until polls a journal


async def test_flower_shows_offload_tasks_by_their_id(
        redis: RedisServer, tmp_path: Path) -> None:
    deployment = Deployment.on(redis, tmp_path / "runs.jsonl")
    with running(tmp_path, deployment, workers=0) as (webs, _):
        worker = start_worker(tmp_path, deployment, "flower", "--pool", "prefork", "-c", "1",
                              "-E")
        try:
            with running_flower(tmp_path, deployment) as url:
                async with (httpx.AsyncClient(base_url=webs[0].base_url,
                                              timeout=CLIENT_TIMEOUT) as http,
                            httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as flower):
                    task = await submit(http, "add", 2, 3)
                    assert (await wait_terminal(http, task["id"]))["result"] == 5
                    info = await shown_ended(flower, task["id"])
        finally:
            worker.stop()
    assert info["uuid"] == task["id"]
    assert info["name"] == "offload.add"
    assert info["worker"].startswith("flower@")

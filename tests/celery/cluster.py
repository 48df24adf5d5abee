"""Real Celery workers and web processes for the Celery-mode tests, started as a user would:
``python -m celery -A service.celery_app worker …`` and ``python -m service``, with the
``OFFLOAD_*`` settings in the environment, on a redis-server the tests started.

Which process ran what comes from the journal of ``tests.e2e.durable_tasks``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from service.scaleout.config import REDIS_PRIORITY_STEPS
from tests.e2e.durable_tasks import RUNS_ENV, read_runs, starts
from tests.e2e.server import REPO, Server, finish, server_env, spawn, wait_ready
from tests.redis_server import RedisServer, fresh_prefix

MODULES = "service.demo,tests.e2e.durable_tasks,tests.celery.celery_tasks"
READY_DEADLINE = 60.0  # seconds for a worker to say it is ready (imports on a busy machine)
STOP_DEADLINE = 30.0
DEFAULT_QUEUE = "celery"  # where Offload's messages go (Celery's default queue)
SEP = "\x06\x16"  # the Redis transport's separator between a queue and its priority step


@dataclass(frozen=True)
class Deployment:
    """The settings every process of one deployment shares."""

    store: str
    broker: str
    runs: Path
    modules: str = MODULES  # OFFLOAD_TASK_MODULES of every process

    @classmethod
    def on(cls, redis: RedisServer, runs: Path, modules: str = MODULES) -> Deployment:
        base = f"redis://127.0.0.1:{redis.port}"
        prefix = fresh_prefix()
        # the broker in another database of the same server, as docs/celery.md shows
        return cls(f"{base}/0?prefix={prefix}", f"{base}/1", runs, modules)

    def env(self, **overrides: str) -> dict[str, str]:
        settings = {"OFFLOAD_SHUTDOWN_GRACE": "2", "OFFLOAD_LEASE": "2", **overrides}
        env = server_env(OFFLOAD_STORE=self.store, OFFLOAD_CELERY_BROKER=self.broker,
                         OFFLOAD_TASK_MODULES=self.modules, **settings)
        env[RUNS_ENV] = str(self.runs)
        return env


@dataclass
class Worker:
    """A ``celery worker`` we started (in a session of its own); its output in ``log_path``."""

    process: subprocess.Popen[bytes]
    log_path: Path
    hostname: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def pool_pids(self) -> set[int]:
        """The worker's pool processes now (its children)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        with contextlib.suppress(OSError):
            return {int(pid) for pid in path.read_text().split()}
        return set()

    def stop(self) -> int | None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL to the whole group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.process.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()


def start_worker(tmp: Path, deployment: Deployment, name: str, *options: str,
                 **overrides: str) -> Worker:
    """``celery -A service.celery_app worker`` with the tests' options, ready to consume."""
    hostname = f"{name}@%h"
    log_path = tmp / f"worker-{name}.log"
    command = [sys.executable, "-m", "celery", "-A", "service.celery_app", "worker",
               "--hostname", hostname, "--without-mingle", "--without-gossip", "-l", "info",
               *(options or ("--pool", "prefork", "-c", "2"))]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=deployment.env(**overrides),
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    worker = Worker(process, log_path, hostname)
    deadline = time.monotonic() + READY_DEADLINE
    while " ready." not in worker.output():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            raise RuntimeError(f"the worker did not start:\n{worker.output()[-6000:]}")
        time.sleep(0.05)  # polling a starting worker's log for its ready line
    return worker


def start_web(tmp: Path, deployment: Deployment, name: str, *args: str,
              **overrides: str) -> Server:
    """``python -m service`` (``make run``'s command) in Celery mode, ready."""
    server = spawn(tmp, deployment.env(**overrides), *args, name=name)
    wait_ready(server)
    return server


@contextlib.contextmanager
def running(tmp: Path, deployment: Deployment, workers: int = 1, webs: int = 1,
            **overrides: str) -> Iterator[tuple[list[Server], list[Worker]]]:
    """Web processes and workers of one deployment, stopped cleanly at the end."""
    started_webs: list[Server] = []
    started_workers: list[Worker] = []
    try:
        for i in range(workers):
            started_workers.append(start_worker(tmp, deployment, f"w{i + 1}", **overrides))
        for i in range(webs):
            started_webs.append(start_web(tmp, deployment, f"web{i + 1}", **overrides))
        yield started_webs, started_workers
    finally:
        stop_all(started_webs, started_workers)


def waiting_messages(broker: str, queue: str = DEFAULT_QUEUE) -> dict[int, int]:
    """Messages waiting with the Redis ``broker`` in ``queue``, per priority step (its
    lists)."""
    client = redis.Redis.from_url(broker)
    try:
        return {step: int(client.llen(queue if step == 0 else f"{queue}{SEP}{step}"))
                for step in REDIS_PRIORITY_STEPS}
    finally:
        client.close()


def stop_all(webs: list[Server], workers: list[Worker]) -> None:
    """Stop these workers (each drains), then the web processes still running."""
    for worker in workers:
        worker.stop()
    for web in webs:
        if web.process.poll() is None:
            finish(web)


KILL_9_CASES = [("idempotent_run", ("succeeded", 2)), ("journal_run", ("failed", 1))]
"""``(name, ending)`` of the tests that ``kill -9`` the pool process running a task of
``durable_tasks``: its status and attempts in the end."""


def assert_ended_after_kill_9(runs: Path, key: str, killed: int, ended: dict[str, Any],
                              ending: tuple[str, int]) -> None:
    """How the task journaled as ``key`` ended after ``kill -9`` of the pool process
    ``killed`` that ran it (``ended``: its record): an idempotent one ran again in another
    process from the message delivered again; any other had started and may not run twice,
    so it failed as Interrupted, having started once and never ended."""
    assert (ended["status"], ended["attempts"]) == ending, ended
    attempts = starts(runs, key)
    if ending[0] == "succeeded":  # run again by the redelivered message, elsewhere
        assert [run.attempt for run in attempts] == [1, 2]
        assert attempts[1].pid != killed
        assert ended["result"] == key
    else:  # it had started, and may not run twice: Interrupted
        assert ended["error"]["type"] == "Interrupted"
        assert [run.attempt for run in attempts] == [1]
        assert [run.event for run in read_runs(runs) if run.key == key] == ["start"]

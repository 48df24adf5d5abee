"""The deployments of the Celery-mode scenarios (B10, ``bench/scaleout.py``), each process
on 127.0.0.1, a free port, stopped by the PID it was started with (``bench/procs.py``).

- Offload in Celery mode, as docs/celery.md shows and ``tests/celery/cluster.py`` starts it:
  a redis-server (``OFFLOAD_STORE`` on its db 0, ``OFFLOAD_CELERY_BROKER`` on its db 1), a
  web process (``python -m service``, ``make run``'s command) and a Celery worker
  (``python -m celery -A service.celery_app worker --pool prefork -c N``), all with
  ``OFFLOAD_TASK_MODULES=bench.scaleout_tasks``; ready once a task submitted over HTTP has
  run on the worker.
- The seed's Flask under gunicorn + Celery 5 + Redis (``bench/flask_celery_app.py``,
  ``bench/celery_app.py``, B2's stack) with a worker of the same concurrency; ready once the
  worker has answered a task.

Both sides' workers get the same flags (``procs.celery_worker``'s). A :class:`Stack` also
tells the CPU time each part has used and what its logs say.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import procs
from bench.common import product_python
from bench.procs import HOST, REPO, Proc
from bench.sqlite import ACCESS

TASKS_MODULE = "bench.scaleout_tasks"
FLASK_WORKERS = 5  # B2's gunicorn sync workers (2 x cores + 1)
WORKER_FLAGS = ("--pool", "prefork", "--loglevel", "WARNING", "--without-gossip",
                "--without-mingle", "--without-heartbeat")  # procs.celery_worker's too
READY_S = 60.0  # a fresh deployment's first task: imports and pool processes on 2 cores
# Celery's "[time: ERROR/MainProcess]" and Hypercorn's "[ERROR]" lines, and tracebacks
PROBLEM = re.compile(r"(?:ERROR|CRITICAL)/|\[(?:ERROR|CRITICAL)\]|Traceback")
WARNING = re.compile(r"WARNING/|\[WARNING\]")


# -- the deployments ---------------------------------------------------------------------------

@dataclass
class Stack:
    """One deployment's processes, by part."""

    web: Proc | None
    parts: dict[str, list[Proc]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part (every process of its sessions)."""
        return {part: sum(cpu_seconds(p) for p in started)
                for part, started in self.parts.items()}

    def logs(self) -> dict[str, Any]:
        return {p.name: scan_log(p.log) for started in self.parts.values() for p in started
                if p.name != "redis"}


def scan_log(log: Path) -> dict[str, Any]:
    """5xx answers (Hypercorn's access lines), problem lines, and warnings, in a log."""
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    warnings: list[str] = []
    with contextlib.suppress(OSError), log.open(errors="replace") as lines:
        for line in lines:
            access = ACCESS.match(line)
            if access:
                statuses[access.group(2)] += 1
            elif PROBLEM.search(line):
                problems.append(line.rstrip()[:300])
            elif WARNING.search(line):
                warnings.append(line.rstrip()[:300])
    return {"server_errors": sum(n for code, n in statuses.items() if code.startswith("5")),
            "problem_count": len(problems), "problems": problems[:10],
            "warning_count": len(warnings), "warnings": warnings[:5]}


def cpu_seconds(proc: Proc) -> float:
    """User + system CPU time of the processes in ``proc``'s session (it and its children:
    a pool's processes, a server's workers), from /proc/<pid>/stat."""
    ticks = 0
    for pid in procs.session_members(proc.pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rfind(")") + 2:].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def offload_env(redis: Proc) -> dict[str, str]:
    base = f"redis://{HOST}:{redis.port}"
    return {"OFFLOAD_STORE": f"{base}/0", "OFFLOAD_CELERY_BROKER": f"{base}/1",
            "OFFLOAD_TASK_MODULES": TASKS_MODULE}


def offload_worker(logs: Path, name: str, concurrency: int, env: dict[str, str]) -> Proc:
    """``celery -A service.celery_app worker`` (the product's venv), as a user starts it."""
    return procs.start(name, [product_python(), "-m", "celery", "-A", "service.celery_app",
                              "worker", *WORKER_FLAGS, f"--concurrency={concurrency}",
                              "--hostname", f"{name}-{os.getpid()}@%h"],
                       logs, env=procs.clean_env(PYTHONPATH=str(REPO), **env),
                       stop_deadline=30.0)


@contextlib.contextmanager
def offload_stack(logs: Path, name: str, concurrency: int, web: bool = True
                  ) -> Iterator[Stack]:
    """redis-server, one Offload Celery worker (``-c concurrency``) and, if ``web``, one web
    process; with ``web``, ready once a task submitted over HTTP has completed."""
    redis = procs.redis_server(logs)
    with procs.running(redis):
        env = offload_env(redis)
        worker = offload_worker(logs, f"{name}-worker", concurrency, env)
        with procs.running(worker):
            if not web:
                yield Stack(None, {"worker": [worker], "redis": [redis]}, env)
                return
            front = procs.service(f"{name}-web", logs, 1, PYTHONPATH=str(REPO), **env)
            with procs.running(front):
                wait_task_done(front, worker)
                yield Stack(front, {"web": [front], "worker": [worker], "redis": [redis]},
                            env)


def wait_task_done(web: Proc, worker: Proc) -> None:
    """Readiness: an ``add`` submitted over HTTP runs on a worker and succeeds."""
    with httpx.Client(base_url=web.url, timeout=15) as client:
        answer = client.post("/tasks", json={"name": "add", "args": [2, 3]})
        if answer.status_code != 202:
            raise RuntimeError(f"{web.name}: POST /tasks answered {answer.status_code}: "
                               f"{answer.text[:300]}")
        path = f"/tasks/{answer.json()['id']}"

        def done() -> bool:
            task = client.get(path, params={"wait": 2}).json()
            if task["status"] in ("failed", "cancelled"):
                raise RuntimeError(f"the readiness task ended {task['status']}: {task}")
            return bool(task["status"] == "succeeded" and task["result"] == 5)
        procs.wait_until(done, f"a task run by {worker.name}", READY_S, worker, step=0.01)


@contextlib.contextmanager
def celery_stack(logs: Path, concurrency: int, flask: bool = True) -> Iterator[Stack]:
    """The seed's stack: redis-server, a Celery prefork worker (``-c concurrency``, ready
    once it has answered a task) and, if ``flask``, Flask under gunicorn."""
    redis = procs.redis_server(logs)
    with procs.running(redis):
        url = f"redis://{HOST}:{redis.port}/0"
        worker = procs.celery_worker(logs, url, concurrency)
        with procs.running(worker):
            if not flask:
                yield Stack(None, {"worker": [worker], "redis": [redis]},
                            {"BENCH_REDIS_URL": url})
                return
            web = procs.gunicorn("flask-celery", "bench.flask_celery_app:app", logs,
                                 FLASK_WORKERS, BENCH_REDIS_URL=url)
            with procs.running(web):
                yield Stack(web, {"web": [web], "worker": [worker], "redis": [redis]},
                            {"BENCH_REDIS_URL": url})

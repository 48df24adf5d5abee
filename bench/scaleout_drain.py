"""B10b's second figure: how fast Offload's Celery workers drain a backlog, with the web
process out of the way (information beside B10b's end-to-end bar).

A fresh deployment (``bench/scaleout_stacks.py``) without a worker: N ``add`` tasks go in
through ``POST /tasks/batch`` (1,000 a request), so the records wait in the store and their
messages in the broker. Then ``celery -A service.celery_app worker -c N`` starts, and runs
them all. The rate is N ÷ (the last task's ``finished_at`` - the first task's
``started_at``), both read back from the records (``GET /tasks`` pages), so the worker's
start-up and the polling here do not count. The CPU time of the worker (its pool processes
included), redis-server and the web process is read when the first task has succeeded and
at the end: ``cpu_busy`` is how many of the machine's cores they kept busy in between.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench import procs
from bench.common import submit_batches
from bench.procs import REPO
from bench.scaleout_stacks import cpu_seconds, offload_env, offload_worker

if TYPE_CHECKING:
    from bench.run import Sizes

DRAIN_S = 300.0  # at most, for the whole backlog


def drain_run(s: Sizes, logs: Path, concurrency: int) -> dict[str, Any]:
    n = s.b10_tasks
    redis = procs.redis_server(logs)
    with procs.running(redis):
        env = offload_env(redis)
        web = procs.service(f"B10-drain-c{concurrency}-web", logs, 1, PYTHONPATH=str(REPO),
                            **env)
        with procs.running(web), httpx.Client(base_url=web.url, timeout=60) as client:
            submit_batches(client, {"name": "add", "args": [1, 2]}, n)
            worker = offload_worker(logs, f"B10-drain-c{concurrency}-worker", concurrency,
                                    env)
            parts = {"worker": worker, "redis": redis, "web": web}
            cpu: list[tuple[float, dict[str, float]]] = []  # (time, CPU s by part)

            def all_done() -> bool:
                counts = client.get("/stats").json()["counts"]
                if counts["failed"] or counts["cancelled"]:
                    raise RuntimeError(f"tasks did not succeed: {counts}")
                if counts["succeeded"] and (len(cpu) < 2 or counts["succeeded"] >= n):
                    cpu.append((time.monotonic(),
                                {k: cpu_seconds(p) for k, p in parts.items()}))
                return bool(counts["succeeded"] >= n)
            with procs.running(worker):
                procs.wait_until(all_done, f"{n} tasks run", DRAIN_S, worker, step=0.1)
            spans = read_spans(client, n)
    first = min(started for started, _ in spans)
    last = max(finished for _, finished in spans)
    (t0, before), (t1, after) = cpu[0], cpu[-1]
    used = {k: after[k] - before[k] for k in after}
    return {"n": n, "concurrency": concurrency, "drain_s": last - first,
            "tasks_per_s": n / (last - first), "cpu_s": used,
            "cpu_busy": sum(used.values()) / (t1 - t0) if t1 > t0 else 0.0}


def read_spans(client: httpx.Client, n: int) -> list[tuple[float, float]]:
    """Every task's (started_at, finished_at), in seconds, from ``GET /tasks`` pages."""
    spans: list[tuple[float, float]] = []
    cursor = None
    for _ in range(n // 1000 + 20):  # bounded: one page per 1,000 tasks, and spare
        page = client.get("/tasks", params={"name": "add", "limit": 1000,
                                            **({"cursor": cursor} if cursor else {})}).json()
        spans += [(_seconds(t["started_at"]), _seconds(t["finished_at"]))
                  for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    if len(spans) != n:
        raise RuntimeError(f"read {len(spans)} tasks back, not {n}")
    return spans


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()

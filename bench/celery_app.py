"""The seed's good pattern, worker side: a Celery 5 app on a real redis-server.

Broker and result backend are the redis-server the benchmark starts (``BENCH_REDIS_URL``).
The worker runs ``celery -A bench.celery_app worker --pool prefork``. The tasks mirror
Offload's demo tasks that the scenarios use (``add``, ``long_task``) plus ``stamp``, which
returns ``time.perf_counter()`` at its start, for submit-to-start latency (B5): the clock is
system-wide (CLOCK_MONOTONIC), so a stamp taken in a worker process compares with one taken
in the client.

``python -m bench.celery_app ping`` exits 0 once a worker answers a task (readiness check).
"""

from __future__ import annotations

import os
import sys
import time

from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
    result_expires=3600,
)


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="stamp")
def stamp() -> float:
    """When the task started, on the system-wide monotonic clock."""
    return time.perf_counter()


@app.task(name="long_task")
def long_task() -> str:
    time.sleep(10)
    return "done"


def ping(timeout: float = 5.0) -> bool:
    return bool(add.delay(1, 1).get(timeout=timeout) == 2)


if __name__ == "__main__":
    if sys.argv[1:] == ["ping"]:
        try:
            sys.exit(0 if ping() else 1)
        except Exception as exc:  # not ready yet: the caller tries again
            print(repr(exc), file=sys.stderr)
            sys.exit(1)
    sys.exit("usage: python -m bench.celery_app ping")

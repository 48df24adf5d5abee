"""B10c, Offload's side: idle submit-to-start latency in Celery mode, submitted through the
library. Prints one JSON object (the shape of ``bench.inprocess b5-celery``'s).

A :class:`~service.TaskService` in this process, configured from the environment as any
process of the deployment is (``OFFLOAD_STORE=redis://…``, ``OFFLOAD_CELERY_BROKER=redis://…``,
``OFFLOAD_TASK_MODULES=bench.scaleout_tasks``), submits N ``stamp`` tasks at a fixed rate;
its runner runs nothing (Celery mode): each submission is stored, planned and sent to the
broker, and a Celery worker's pool process starts it. The latency of a task is its stamp
minus ``time.perf_counter()`` just before ``submit()`` (one machine, one clock).

Two parts of it, for information: how long ``submit()`` itself took (the record planned and
stored; the message is sent in the background), and the record's ``created_at`` to its
``started_at`` (wall clock: from admission to a worker's claim of the record).

    python -m bench.scaleout_latency --n 500 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

READY_S = 60.0  # the first task waits for the worker's start-up (imports, pool processes)


async def measure(n: int, rate: float) -> dict[str, Any]:
    from bench.scaleout_tasks import stamp
    from service import Settings, TaskService

    settings = Settings.load()
    if not settings.celery_broker:
        raise SystemExit("OFFLOAD_CELERY_BROKER is not set")
    service = TaskService(settings)
    service.register(stamp)
    await service.start()
    try:
        await (await stamp.submit()).result(READY_S)  # a worker answers: ready
        for _ in range(20):  # warm-up, not counted
            await (await stamp.submit()).result(10)
        sent: list[tuple[float, float, Any]] = []
        begin = time.perf_counter() + 0.05
        for i in range(n):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            before = time.perf_counter()
            handle = await stamp.submit()
            sent.append((before, time.perf_counter(), handle))
        records = [(before, after, await handle.wait(30)) for before, after, handle in sent]
    finally:
        await service.stop(grace=1)
    return {"n": n, "rate": rate,
            "latencies": [record.result - before for before, _, record in records],
            "submit_call": [after - before for before, after, _ in records],
            "created_to_started": [(r.started_at or 0) - r.created_at for _, _, r in records]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    json.dump(asyncio.run(measure(args.n, args.rate)), sys.stdout)


if __name__ == "__main__":
    main()

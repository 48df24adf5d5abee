"""Library-level figures, each in a fresh process of its own; prints one JSON object.

B4, tasks/s of N no-op tasks submitted one by one and completed, every result read back:

    python -m bench.inprocess b4-offload --n 100000      # the product's venv
    python -m bench.inprocess b4-offload-map --n 100000  # the same, submitted with map()
    python -m bench.inprocess b4-taskiq --n 100000       # bench/.venv (taskiq)

B5, submit-to-start latency: N tasks submitted at a fixed rate on an idle engine; each task
returns ``time.perf_counter()`` at its start, compared with the clock just before submit:

    python -m bench.inprocess b5-offload --n 500 --rate 100  # in-process TaskService
    python -m bench.inprocess b5-celery --n 500 --rate 100   # .delay() to a prefork worker
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

Result = dict[str, Any]


async def b4_offload(n: int, use_map: bool = False) -> Result:
    from bench.offload_tasks import noop
    from service import Settings, TaskService

    service = TaskService(Settings(max_queue=n + 1000, max_records=n + 1000))
    service.register(noop)
    await service.start()
    try:
        gc.collect()
        started = time.perf_counter()
        if use_map:
            handles = []
            for first in range(0, n, 1000):
                handles += await noop.map([() for _ in range(min(1000, n - first))])
        else:
            handles = [await noop.submit() for _ in range(n)]
        submitted = time.perf_counter()
        for handle in handles:
            await handle.result(60)
        finished = time.perf_counter()
    finally:
        await service.stop(grace=1)
    return _rate(n, started, submitted, finished)


async def b4_taskiq(n: int) -> Result:
    from bench.taskiq_tasks import broker, noop

    await broker.startup()
    try:
        gc.collect()
        started = time.perf_counter()
        handles = [await noop.kiq() for _ in range(n)]
        submitted = time.perf_counter()
        await broker.wait_all()
        for handle in handles:
            result = await handle.wait_result(check_interval=0.01, timeout=60)
            if result.is_err:
                raise RuntimeError(f"taskiq task failed: {result.error!r}")
        finished = time.perf_counter()
    finally:
        await broker.shutdown()
    return _rate(n, started, submitted, finished)


def _rate(n: int, started: float, submitted: float, finished: float) -> Result:
    return {"n": n, "elapsed_s": finished - started, "submit_s": submitted - started,
            "tasks_per_s": n / (finished - started)}


async def b5_offload(n: int, rate: float) -> Result:
    from bench.offload_tasks import stamp
    from service import Settings, TaskService

    service = TaskService(Settings())
    service.register(stamp)
    await service.start()
    try:
        for _ in range(20):  # warm-up, not counted
            await (await stamp.submit()).result(10)
        sent: list[tuple[float, Any]] = []
        begin = time.perf_counter() + 0.05
        for i in range(n):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            before = time.perf_counter()
            sent.append((before, await stamp.submit()))
        latencies = [await handle.result(30) - before for before, handle in sent]
    finally:
        await service.stop(grace=1)
    return {"n": n, "rate": rate, "latencies": latencies}


def b5_celery(n: int, rate: float) -> Result:
    from bench.celery_app import stamp

    for _ in range(20):  # warm-up, not counted (connections, the worker's first tasks)
        stamp.delay().get(timeout=10)
    sent = []
    begin = time.perf_counter() + 0.05
    for i in range(n):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        before = time.perf_counter()
        sent.append((before, stamp.delay()))
    latencies = [result.get(timeout=30) - before for before, result in sent]
    return {"n": n, "rate": rate, "latencies": latencies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["b4-offload", "b4-offload-map", "b4-taskiq",
                                         "b5-offload", "b5-celery"])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    runs: dict[str, Callable[[], Coroutine[Any, Any, Result]]] = {
        "b4-offload": lambda: b4_offload(args.n),
        "b4-offload-map": lambda: b4_offload(args.n, use_map=True),
        "b4-taskiq": lambda: b4_taskiq(args.n),
        "b5-offload": lambda: b5_offload(args.n, args.rate),
    }
    if args.what == "b5-celery":
        result = b5_celery(args.n, args.rate)
    else:
        result = asyncio.run(runs[args.what]())
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

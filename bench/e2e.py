"""End-to-end drivers over HTTP, run in a process of their own; print one JSON object.

``single`` (B2): N ``add`` tasks, one ``POST /tasks`` each over C keep-alive connections,
then every result fetched with ``GET /tasks/{id}?wait=…``; the time from the first submit to
the last result. ``batch`` (B3): the same tasks in ``POST /tasks/batch`` requests of B tasks;
results read back in bulk (Offload: ``GET /tasks`` pages, after waiting on the last task;
Flask+Celery: ``POST /tasks/results``, i.e. Celery's ``ResultSet.join_native``). Every
result is checked (``add(i, 1) == i + 1``).

``flood`` (B8): N ``add`` tasks in batches through Offload, RSS of the server's worker
process (``/proc/<pid>/status`` VmRSS) sampled each time another ``--every`` tasks have
been submitted and completed.

    python -m bench.e2e single --port P --target offload --n 5000 --conns 32
    python -m bench.e2e batch --port P --target celery --n 10000 --batch 1000 --conns 4
    python -m bench.e2e flood --port P --pid W --n 1000000 --every 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from bench.httpclient import Connection, HTTPError, json_request, loads
from bench.procs import rss_kib

MAX_RETRIES = 2000  # bounded retries of a 429 (queue full) per request
TERMINAL = {"succeeded", "failed", "cancelled"}


def _add(i: int) -> dict[str, Any]:
    return {"name": "add", "args": [i, 1]}


async def _post_retrying(conn: Connection, path: str, body: Any) -> Any:
    """POST; on 429 (queue full) wait a little and try again, a bounded number of times."""
    for _ in range(MAX_RETRIES):
        status, data = await conn.request("POST", path, body)
        if status in (200, 202):
            return loads(data)
        if status != 429:
            raise HTTPError(f"POST {path} answered {status}: {data[:300]!r}")
        await asyncio.sleep(0.01)
    raise HTTPError(f"POST {path}: still 429 after {MAX_RETRIES} tries")


async def _parallel(conns: list[Connection], jobs: list[Any], work: Any) -> list[Any]:
    """Run ``work(conn, job)`` for every job, one at a time per connection; results in
    the jobs' order."""
    results: list[Any] = [None] * len(jobs)
    next_job = iter(range(len(jobs)))

    async def worker(conn: Connection) -> None:
        for index in next_job:
            results[index] = await work(conn, jobs[index])

    await asyncio.gather(*(worker(c) for c in conns))
    return results


def _check(values: list[Any], n: int, offset: int = 0) -> None:
    bad = [i for i, v in enumerate(values) if v != offset + i + 1]
    if bad:
        raise RuntimeError(f"{len(bad)} wrong or missing results, e.g. task {bad[0]}: "
                           f"{values[bad[0]]!r}")


async def _wait_result(conn: Connection, task_id: str) -> Any:
    for _ in range(20):  # bounded: 20 waits of up to 10 s
        task = await json_request(conn, "GET", f"/tasks/{task_id}?wait=10")
        if task["status"] in TERMINAL:
            if task["status"] != "succeeded":
                raise RuntimeError(f"task {task_id} ended {task['status']}: {task}")
            return task["result"]
    raise RuntimeError(f"task {task_id} did not finish in 200 s")


async def single(port: int, n: int, conns: int) -> dict[str, Any]:
    pool = [Connection(port) for _ in range(conns)]
    try:
        started = time.perf_counter()
        tasks = await _parallel(pool, list(range(n)),
                                lambda c, i: _post_retrying(c, "/tasks", _add(i)))
        submitted = time.perf_counter()
        values = await _parallel(pool, [t["id"] for t in tasks], _wait_result)
        finished = time.perf_counter()
    finally:
        for conn in pool:
            conn.close()
    _check(values, n)
    return _timing(n, started, submitted, finished)


async def batch(port: int, target: str, n: int, size: int, conns: int) -> dict[str, Any]:
    pool = [Connection(port) for _ in range(conns)]
    chunks = [list(range(first, min(n, first + size))) for first in range(0, n, size)]
    try:
        started = time.perf_counter()
        answers = await _parallel(pool, chunks, lambda c, chunk: _post_retrying(
            c, "/tasks/batch", {"tasks": [_add(i) for i in chunk]}))
        ids = [task["id"] for answer in answers for task in answer["items"]]
        submitted = time.perf_counter()
        if target == "offload":
            values = await _offload_results(pool[0], ids)
        else:
            values = await _celery_results(pool, ids, size)
        finished = time.perf_counter()
    finally:
        for conn in pool:
            conn.close()
    _check(values, n)
    return _timing(n, started, submitted, finished)


async def _offload_results(conn: Connection, ids: list[str]) -> list[Any]:
    """Wait on the last task, then read every result from ``GET /tasks`` pages (newest
    first); any task not finished by then is waited on by itself."""
    await _wait_result(conn, ids[-1])
    wanted = {task_id: index for index, task_id in enumerate(ids)}
    values: list[Any] = [None] * len(ids)
    found, cursor = 0, None
    for _ in range(len(ids) // 1000 + 20):  # bounded: one page per 1000 tasks, and spare
        path = "/tasks?name=add&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = await json_request(conn, "GET", path)
        for task in page["items"]:
            index = wanted.get(task["id"])
            if index is not None and task["status"] == "succeeded":
                values[index] = task["result"]
                found += 1
        cursor = page["next_cursor"]
        if cursor is None or found == len(ids):
            break
    for index, value in enumerate(values):
        if value is None:
            values[index] = await _wait_result(conn, ids[index])
    return values


async def _celery_results(pool: list[Connection], ids: list[str], size: int) -> list[Any]:
    chunks = [ids[first:first + size] for first in range(0, len(ids), size)]

    async def fetch(conn: Connection, chunk: list[str]) -> list[Any]:
        answer = await json_request(conn, "POST", "/tasks/results",
                                    {"ids": chunk, "wait": 60})
        return [item["result"] if item["status"] == "succeeded" else None
                for item in answer["items"]]

    parts = await _parallel(pool, chunks, fetch)
    return [value for part in parts for value in part]


def _timing(n: int, started: float, submitted: float, finished: float) -> dict[str, Any]:
    return {"n": n, "elapsed_s": finished - started, "submit_s": submitted - started,
            "tasks_per_s": n / (finished - started),
            "submit_per_s": n / (submitted - started)}


async def flood(port: int, pid: int, n: int, every: int, size: int,
                conns: int) -> dict[str, Any]:
    pool = [Connection(port) for _ in range(conns)]
    samples: list[dict[str, Any]] = []
    done = 0
    started = time.perf_counter()
    try:
        while done < n:
            count = min(every, n - done)
            chunks = [list(range(done + first, done + min(count, first + size)))
                      for first in range(0, count, size)]
            answers = await _parallel(pool, chunks, lambda c, chunk: _post_retrying(
                c, "/tasks/batch", {"tasks": [_add(i) for i in chunk]}))
            last = answers[-1]["items"][-1]["id"]
            if await _wait_result(pool[0], last) != done + count:
                raise RuntimeError("the last task of a chunk returned a wrong result")
            await _wait_idle(pool[0])
            done += count
            stats = await json_request(pool[0], "GET", "/stats")
            samples.append({"tasks": done, "rss_kib": rss_kib(pid),
                            "elapsed_s": time.perf_counter() - started,
                            "succeeded": stats["counts"]["succeeded"],
                            "failed": stats["counts"]["failed"]})
    finally:
        for conn in pool:
            conn.close()
    elapsed = time.perf_counter() - started
    return {"n": n, "every": every, "samples": samples, "elapsed_s": elapsed,
            "tasks_per_s": n / elapsed}


async def _wait_idle(conn: Connection) -> None:
    for _ in range(600):  # bounded: 60 s
        stats = await json_request(conn, "GET", "/stats")
        if stats["queue_depth"] == 0 and stats["running"] == 0:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the service did not become idle in 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["single", "batch", "flood"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", choices=["offload", "celery"], default="offload")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--pid", type=int, default=0, help="flood: the server's worker PID")
    parser.add_argument("--every", type=int, default=100_000)
    args = parser.parse_args()
    if args.mode == "single":
        result = asyncio.run(single(args.port, args.n, args.conns))
    elif args.mode == "batch":
        result = asyncio.run(batch(args.port, args.target, args.n, args.batch, args.conns))
    else:
        result = asyncio.run(flood(args.port, args.pid, args.n, args.every, args.batch,
                                   args.conns))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

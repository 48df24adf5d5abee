"""Cross-worker wake latency (B9wake): how long after a task ends a ``?wait=`` held by
*another* worker process answers. Run in a process of its own; prints one JSON object.

For each of N ``sleep(hold)`` tasks, submitted one at a time to a server with several workers
on one SQLite file:

1. every connection of a small keep-alive pool asks ``GET /stats``, whose ``running`` is
   the answering worker's own; the connections that see the task running are on the worker
   that runs it, the others (while the deployment-wide count says it runs) are not;
2. ``GET /tasks/{id}?wait=10`` is sent on a connection of the other worker (every
   ``--same-every``-th task: of the same worker, for contrast), while the task still runs;
3. the answer's arrival (``time.time()``) minus the task's ``finished_at`` (the server's
   ``time.time()`` when it ended; same machine, same clock) is the wake latency.

A sample is dropped, and counted, if the wait was sent after the task had ended, if the
connection was reopened in between (it may then be on another worker), or if no connection
of the other worker could be found for that task.

    python -m bench.wake --port P --n 200 --hold 0.15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from typing import Any

from bench.httpclient import Connection, json_request

POOL = 8  # connections to start with; Hypercorn's workers share the listening socket
POOL_MAX = 32


async def _stats(conn: Connection) -> tuple[int, int]:
    """(this worker's running tasks, the deployment's running tasks)."""
    stats = await json_request(conn, "GET", "/stats")
    return int(stats["running"]), int(stats["counts"]["running"])


async def _until_quiet(pool: list[Connection]) -> None:
    """Until no worker runs anything (the previous task's end seen everywhere)."""
    for _ in range(500):  # bounded: about 5 s
        if all(local == 0 for local, _ in [await _stats(c) for c in pool]):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("the workers did not become idle in 5 s")


async def _sides(pool: list[Connection]) -> tuple[list[Connection], list[Connection]] | None:
    """The pool split into (connections of the worker running the task, connections of
    another worker), or None if the task was not seen running in time."""
    for _ in range(400):  # bounded: the task is claimed within a poll interval or two
        if any(local for local, _ in [await _stats(c) for c in pool]):
            break
        await asyncio.sleep(0.002)
    else:
        return None
    runner: list[Connection] = []
    other: list[Connection] = []
    for conn in pool:  # every one of these asks after the task was seen running
        local, everywhere = await _stats(conn)
        if local:
            runner.append(conn)
        elif everywhere:
            other.append(conn)
    return runner, other


async def _wait_on(conn: Connection, task_id: str) -> tuple[str, float]:
    """(``ok`` or why the sample is dropped, the wake latency in seconds)."""
    port = conn.local_port()
    sent = time.time()
    task = await json_request(conn, "GET", f"/tasks/{task_id}?wait=10")
    arrived = time.time()
    if task["status"] != "succeeded":
        raise RuntimeError(f"task {task_id} ended {task['status']}: {task}")
    finished = datetime.fromisoformat(task["finished_at"]).timestamp()
    if port is None or conn.local_port() != port:
        return "reconnected", 0.0
    if sent >= finished:
        return "late", 0.0
    return "ok", arrived - finished


async def measure(port: int, n: int, hold: float, same_every: int) -> dict[str, Any]:
    pool = [Connection(port) for _ in range(POOL)]
    cross: list[float] = []
    same: list[float] = []
    dropped = {"late": 0, "reconnected": 0, "unclassified": 0}
    index = 0
    try:
        while len(cross) < n and index < 3 * n:  # bounded: drops cost at most 2 n more tasks
            index += 1
            await _until_quiet(pool)
            body = {"name": "sleep", "args": [hold]}
            task_id = (await json_request(pool[0], "POST", "/tasks", body, (202,)))["id"]
            sides = await _sides(pool)
            want_same = same_every > 0 and index % same_every == 0
            chosen = None if sides is None else sides[0 if want_same else 1]
            if not chosen:
                dropped["unclassified"] += 1
                if len(pool) < POOL_MAX:
                    pool += [Connection(port) for _ in range(4)]
                await json_request(pool[0], "GET", f"/tasks/{task_id}?wait=10")
                continue
            verdict, latency = await _wait_on(chosen[index % len(chosen)], task_id)
            if verdict != "ok":
                dropped[verdict] += 1
            else:
                (same if want_same else cross).append(latency)
    finally:
        for conn in pool:
            conn.close()
    return {"n": n, "hold_s": hold, "tasks": index, "connections": len(pool),
            "cross_s": cross, "same_s": same, "dropped": dropped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n", type=int, default=200, help="cross-worker samples wanted")
    parser.add_argument("--hold", type=float, default=0.15, help="each task's sleep, s")
    parser.add_argument("--same-every", type=int, default=4,
                        help="every k-th task waits on the runner's own worker (0: never)")
    args = parser.parse_args()
    json.dump(asyncio.run(measure(args.port, args.n, args.hold, args.same_every)), sys.stdout)


if __name__ == "__main__":
    main()

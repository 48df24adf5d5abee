"""Clients that hold slow work open for a while (B6); prints a JSON summary.

``offload``: each client submits a ``sleep`` task and holds ``GET /tasks/{id}?wait=…`` until it
ends, again and again until ``--duration`` has passed. ``flask``: each client holds
``GET /process?seconds=…`` on the bad-pattern server, whose worker sleeps in the handler.

    python -m bench.holders --port P --mode offload --clients 16 --duration 8 --hold 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from bench.httpclient import Connection, json_request

TERMINAL = {"succeeded", "failed", "cancelled"}


async def hold(port: int, mode: str, seconds: float, deadline: float) -> int:
    conn = Connection(port, timeout=seconds + 30)
    held = 0
    try:
        while time.monotonic() < deadline:
            if mode == "offload":
                task = await json_request(conn, "POST", "/tasks",
                                          {"name": "sleep", "args": [seconds]}, expect=(202,))
                for _ in range(10):  # bounded: the task is shorter than one wait
                    task = await json_request(conn, "GET",
                                              f"/tasks/{task['id']}?wait={seconds + 5:g}")
                    if task["status"] in TERMINAL:
                        break
            else:
                await json_request(conn, "GET", f"/process?seconds={seconds:g}")
            held += 1
    finally:
        conn.close()
    return held


async def main_async(port: int, mode: str, clients: int, duration: float,
                     seconds: float) -> dict[str, object]:
    deadline = time.monotonic() + duration
    counts = await asyncio.gather(*(hold(port, mode, seconds, deadline)
                                    for _ in range(clients)))
    return {"clients": clients, "holds": sum(counts), "hold_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["offload", "flask"], required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--hold", type=float, default=10.0, help="seconds one hold lasts")
    args = parser.parse_args()
    result = asyncio.run(main_async(args.port, args.mode, args.clients, args.duration,
                                    args.hold))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

"""Soak: a mixed workload against the real server for a while, watching it for leaks.

    .venv/bin/python -m bench.soak [--minutes 10] [--every 30]

Starts the service the way ``make run`` does (Hypercorn, hypercorn.toml) on a free port of
127.0.0.1, drives it with a mix of submissions (quick, failing, retried-by-nobody, slow,
cancelled, thread, process, batches, event streams, long polls, lists, deletes) and prints,
every ``--every`` seconds, the server's RSS, open file descriptors, threads, child processes
and task counts. Memory and descriptors must stay flat. Stops the server by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CLIENTS = 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int) -> subprocess.Popen[bytes]:
    hypercorn = Path(sys.executable).parent / "hypercorn"
    env = {**os.environ, "OFFLOAD_MAX_RECORDS": "5000", "OFFLOAD_RESULT_TTL": "60",
           "OFFLOAD_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [str(hypercorn), "--config", "hypercorn.toml", "--bind", f"127.0.0.1:{port}",
         "--access-logfile", "/dev/null", "service.app:app"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def worker_pid(master: int) -> int:
    """Hypercorn's worker process (the one running the app) under its master."""
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise RuntimeError("no Hypercorn worker process found")


def sample(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {"rss_kib": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "children": len(children)}


async def wait_ready(client: httpx.AsyncClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)  # polling a starting server, bounded by the deadline
    raise RuntimeError("the server did not become ready")


async def one_round(client: httpx.AsyncClient, rng: random.Random, done: dict[str, int]) -> None:
    kind = rng.choices(["add", "fail", "sleep", "count", "thread", "cpu", "cancel", "batch",
                        "list", "delete"], weights=[30, 8, 10, 6, 6, 3, 8, 4, 6, 5])[0]
    if kind == "batch":
        body = {"tasks": [{"name": "add", "args": [i, i]} for i in range(50)]}
        await client.post("/tasks/batch", json=body)
    elif kind == "list":
        await client.get("/tasks", params={"status": ["succeeded", "failed"], "limit": 100})
        await client.get("/stats")
    else:
        await _single(client, rng, kind)
    done[kind] = done.get(kind, 0) + 1


async def _single(client: httpx.AsyncClient, rng: random.Random, kind: str) -> None:
    name, args = {
        "add": ("add", [1, 2]), "fail": ("fail", ["boom"]), "sleep": ("sleep", [0.2]),
        "count": ("count", [5, 0.02]), "thread": ("blocking_sleep", [0.05]),
        "cpu": ("cpu", [200_000]), "cancel": ("sleep", [30]), "delete": ("add", [3, 4]),
    }[kind]
    response = await client.post("/tasks", json={"name": name, "args": args})
    if response.status_code not in (200, 202):
        return  # 429 under load is the service doing its job
    task_id = response.json()["id"]
    if kind == "cancel":
        await client.post(f"/tasks/{task_id}/cancel")
    if kind == "count":
        async with client.stream("GET", f"/tasks/{task_id}/events") as stream:
            async for _ in stream.aiter_lines():
                pass
    final = await client.get(f"/tasks/{task_id}", params={"wait": 10})
    if kind == "delete" and final.json()["status"] == "succeeded":
        await client.delete(f"/tasks/{task_id}")


async def drive(base_url: str, stop_at: float, done: dict[str, int], seed: int) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        while time.monotonic() < stop_at:
            await one_round(client, rng, done)


async def soak(minutes: float, every: float) -> list[dict[str, Any]]:
    port = free_port()
    server = start_server(port)
    rows: list[dict[str, Any]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await wait_ready(client, time.monotonic() + 30)
            pid = worker_pid(server.pid)
            started = time.monotonic()
            stop_at = started + minutes * 60
            done: dict[str, int] = {}
            drivers = [asyncio.create_task(drive(base, stop_at, done, seed))
                       for seed in range(CLIENTS)]
            while time.monotonic() < stop_at:
                await asyncio.sleep(min(every, max(0.0, stop_at - time.monotonic())))
                stats = (await client.get("/stats")).json()
                row = {"t": round(time.monotonic() - started), **sample(pid),
                       "rounds": sum(done.values()), "records": sum(stats["counts"].values()),
                       "running": stats["running"], "queue": stats["queue_depth"]}
                rows.append(row)
                print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            await asyncio.gather(*drivers)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            server.kill()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0)
    options = parser.parse_args()
    rows = asyncio.run(soak(options.minutes, options.every))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(rows, indent=1))
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        print(f"RSS {first['rss_kib']} -> {last['rss_kib']} KiB "
              f"({100 * (last['rss_kib'] - first['rss_kib']) / first['rss_kib']:+.1f} %), "
              f"fds {first['fds']} -> {last['fds']}, threads {first['threads']} -> "
              f"{last['threads']}, {last['rounds']} rounds")


if __name__ == "__main__":
    main()

"""Helpers of the SQLite end-to-end tests: servers on one database file, and which worker
process answers a given connection.

Hypercorn's workers share one listening socket; the kernel hands each new connection to one
of them. To test "any worker answers any request" for real, a test opens fresh connections
until it holds one that each worker accepted: it asks ``/proc`` which process owns the
server's end of the connection (Linux only, as is the rest of the e2e suite).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from .durable_tasks import RUNS_ENV
from .server import Server, finish, server_env, spawn, wait_ready

MODULES = "service.demo,tests.e2e.durable_tasks"
CLIENT_TIMEOUT = 30.0
SEARCH_SECONDS = 30.0  # time given to fresh connections to reach every worker
WAVE = 4  # connections opened at once while looking for each worker
WAIT = 20  # seconds a ?wait= may hold; every task waited for ends well before
RUNS_FILE = "runs.jsonl"  # the runs journal, in the folder of a two_workers_in server


def sqlite_env(db: Path, runs: Path, **overrides: str) -> dict[str, str]:
    """The environment of a server on the SQLite file ``db``, journaling runs to ``runs``."""
    settings = {"OFFLOAD_STORE": f"sqlite:///{db}", "OFFLOAD_TASK_MODULES": MODULES,
                "OFFLOAD_SHUTDOWN_GRACE": "2", **overrides}
    env = server_env(**settings)
    env[RUNS_ENV] = str(runs)
    return env


def start_sqlite(tmp: Path, db: Path, runs: Path, *args: str, name: str = "server",
                 **overrides: str) -> Server:
    """Start ``python -m service`` on ``db`` and wait until it answers ``/readyz``."""
    server = spawn(tmp, sqlite_env(db, runs, **overrides), *args, name=name)
    wait_ready(server)
    return server


@contextmanager
def two_workers_in(tmp: Path, name: str) -> Iterator[Server]:
    """One server, two Hypercorn workers, one SQLite file, all in ``tmp`` (the runs
    journal too: :func:`runs_of`); both workers serve before it is used."""
    server = start_sqlite(tmp, tmp / "offload.db", tmp / RUNS_FILE, "--workers", "2",
                          name=name)
    try:
        asyncio.run(wait_for_workers(server, 2))
        yield server
    finally:
        finish(server)


def runs_of(server: Server) -> Path:
    """The runs journal of a server of :func:`two_workers_in` (beside its log)."""
    return server.log_path.parent / RUNS_FILE


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """Use a server a test started: if the test fails, the server is killed and its output
    printed (pytest shows it with the failure); otherwise a server still running is
    stopped with SIGTERM and must exit cleanly (``finish``)."""
    try:
        yield server
    except BaseException:
        if server.process.poll() is None:
            server.kill()
        print(f"--- output of {server.log_path.name} (pid {server.pid}) ---\n"
              f"{server.output_tail()}")
        raise
    if server.process.poll() is None:
        finish(server)


def group_pids(server: Server) -> set[int]:
    """Every live process of the server's session (it was started in a group of its own)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == server.pid:  # field 5 of proc(5): pgrp
            found.add(int(entry))
    return found


def _server_side_inode(server_port: int, client_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if (int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port and inode):
                return inode
    return None


def owner_of_connection(server: Server, client_port: int) -> int | None:
    """The pid of the server process that holds its end of our connection from
    ``client_port`` (None if no process of the server holds it)."""
    inode = _server_side_inode(server.port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in group_pids(server):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def client_port(response: httpx.Response) -> int:
    """The local port of the connection a response came over."""
    stream: Any = response.extensions["network_stream"]
    address = stream.get_extra_info("client_addr")
    return int(address[1])


class Pinned:
    """An HTTP client whose one connection a known worker process accepted."""

    def __init__(self, http: httpx.AsyncClient, pid: int, port: int) -> None:
        self.http = http
        self.pid = pid
        self.port = port

    def check(self, response: httpx.Response) -> httpx.Response:
        """The response, after checking that it came over the pinned connection."""
        assert client_port(response) == self.port, "the connection was replaced"
        return response


def one_connection_client(server: Server) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT, limits=limits)


@asynccontextmanager
async def pinned_pool(server: Server, each: int = 1, workers: int = 2
                      ) -> AsyncIterator[dict[int, list[Pinned]]]:
    """Fresh connections, ``each`` accepted by every one of ``workers`` worker processes,
    by pid.

    Connections are opened a few at a time, at once: an idle server tends to hand
    connections opened one after another to the same worker, and on a busy machine one
    worker may win every accept for seconds. Hypercorn closes a connection idle for
    ``keep_alive_timeout`` (5 s), so while the search goes on, the connections already
    pinned are used once more before each wave (one that was closed meanwhile is
    replaced), and again once the pool is full: the caller gets connections that are all
    open, and has 5 s to use each.
    """
    async with AsyncExitStack() as stack:
        pool: dict[int, list[Pinned]] = {}
        end = time.monotonic() + SEARCH_SECONDS
        while time.monotonic() < end:
            closed = await _drop_closed(pool)
            if not closed and sum(len(found) >= each for found in pool.values()) >= workers:
                yield pool
                return
            wave = [one_connection_client(server) for _ in range(WAVE)]
            answers = await asyncio.gather(*(http.get("/readyz") for http in wave))
            for http, response in zip(wave, answers, strict=True):
                pid = owner_of_connection(server, client_port(response))
                if response.status_code == 200 and pid is not None and len(
                        pool.setdefault(pid, [])) < each:
                    stack.push_async_callback(http.aclose)
                    pool[pid].append(Pinned(http, pid, client_port(response)))
                else:
                    await http.aclose()
        raise AssertionError(f"fresh connections reached these workers so often in "
                             f"{SEARCH_SECONDS}s: "
                             f"{ {pid: len(pinned) for pid, pinned in pool.items()} }")


async def _drop_closed(pool: dict[int, list[Pinned]]) -> bool:
    """Use every pinned connection once; drop those the server closed. True if any was."""
    pinned = [p for found in pool.values() for p in found]
    answers = await asyncio.gather(*(p.http.get("/readyz") for p in pinned))
    closed = {id(p) for p, response in zip(pinned, answers, strict=True)
              if client_port(response) != p.port}
    for pid, found in pool.items():
        pool[pid] = [p for p in found if id(p) not in closed]
    return bool(closed)


@asynccontextmanager
async def pinned_clients(server: Server, workers: int = 2) -> AsyncIterator[dict[int, Pinned]]:
    """One fresh connection accepted by each worker process, by pid (see ``pinned_pool``)."""
    async with pinned_pool(server, 1, workers) as pool:
        yield {pid: pinned[0] for pid, pinned in pool.items() if pinned}


async def wait_for_workers(server: Server, count: int, deadline: float = 30.0) -> set[int]:
    """Poll with fresh connections until ``count`` workers answer ``/readyz`` (a server's
    ``/readyz`` is 200 as soon as one worker is ready)."""
    seen: set[int] = set()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        wave = [one_connection_client(server) for _ in range(WAVE)]
        try:
            answers = await asyncio.gather(*(http.get("/readyz") for http in wave))
            for response in answers:
                pid = owner_of_connection(server, client_port(response))
                if response.status_code == 200 and pid is not None:
                    seen.add(pid)
        finally:
            for http in wave:
                await http.aclose()
        if len(seen) >= count:
            return seen
        await asyncio.sleep(0.05)  # polling a starting server's readiness
    raise AssertionError(f"only the workers {sorted(seen)} became ready in {deadline}s:\n"
                         f"{server.output_tail()}")


async def wait_until(condition: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    """Poll ``condition`` (e.g. a look at the runs journal) until it holds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline}s: {what}")
        await asyncio.sleep(0.02)  # a cheap look at a file, not a guess at how long work takes


def timestamp(value: str) -> float:
    """Seconds since the epoch of a task's ISO 8601 time field."""
    return datetime.fromisoformat(value).timestamp()


def key_prefix() -> str:
    return uuid.uuid4().hex[:8] + "-"


async def post(pinned: Pinned, name: str, **body: Any) -> dict[str, Any]:
    response = pinned.check(await pinned.http.post("/tasks", json={"name": name, **body}))
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    return task


async def wait_on(pinned: Pinned, task_id: str, wait: float = WAIT) -> dict[str, Any]:
    response = pinned.check(await pinned.http.get(f"/tasks/{task_id}", params={"wait": wait}))
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def other(pinned: dict[int, Pinned], pid: int) -> Pinned:
    (peer,) = (p for p in pinned.values() if p.pid != pid)
    return peer

"""Tasks that leave evidence on disk, for the end-to-end tests of the SQLite store.

Loaded by the real server through ``OFFLOAD_TASK_MODULES=service.demo,tests.e2e.durable_tasks``.
Every run appends one JSON line to the file named by ``E2E_RUNS`` (``O_APPEND``, one
``write`` per line, so the lines of several processes never mix): the task's key, id,
attempt, the pid of the process that ran it, what happened (``start``, ``end``) and when.
The journal outlives any ``kill -9``: a test reads it to prove that a task ran exactly once,
ran again after a crash, or ran in this worker or that one.

A task given a ``gate`` (a file path) holds until that file exists, at most ``seconds``:
the test decides when it ends, nothing is timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service import current_task, report_progress, task

RUNS_ENV = "E2E_RUNS"
GATE_POLL = 0.02  # seconds between two looks at a gate file, inside the task


def _record(key: str, event: str) -> None:
    path = os.environ.get(RUNS_ENV)
    if not path:
        return
    context = current_task()
    entry = {"key": key, "event": event, "pid": os.getpid(), "at": time.time(),
             "id": context.task_id, "attempt": context.attempt}
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write of a short line: appended whole, never interleaved
    finally:
        os.close(fd)


async def _hold(seconds: float, gate: str) -> None:
    if not gate:
        await asyncio.sleep(seconds)
        return
    deadline = time.monotonic() + seconds
    while not _is_open(gate):
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(GATE_POLL)


def _is_open(gate: str) -> bool:
    return Path(gate).exists()


async def _journaled(key: str, seconds: float, gate: str) -> str:
    _record(key, "start")
    await _hold(seconds, gate)
    _record(key, "end")
    return key


@task
async def journal_run(key: str, seconds: float = 0.0, gate: str = "") -> str:
    """Journal a start, hold ``seconds`` (or until ``gate`` exists), journal the end."""
    return await _journaled(key, seconds, gate)


@task(idempotent=True)
async def idempotent_run(key: str, seconds: float = 0.0, gate: str = "") -> str:
    """``journal_run``, marked safe to run again after a crash."""
    return await _journaled(key, seconds, gate)


@task(concurrency=2)
async def limited_run(key: str, seconds: float = 0.0, gate: str = "") -> str:
    """``journal_run`` of a type that may run at most twice at once, deployment-wide."""
    return await _journaled(key, seconds, gate)


@task
async def progress_run(key: str, steps: int = 5, delay: float = 0.1) -> int:
    """Journal a start, then report progress 1..steps, one step every ``delay`` seconds."""
    _record(key, "start")
    for step in range(1, steps + 1):
        await asyncio.sleep(delay)
        report_progress(step, steps, f"{key} {step}")
    _record(key, "end")
    return steps


# -- reading the journal (test side) -----------------------------------------------------


@dataclass(frozen=True)
class Run:
    key: str
    event: str
    pid: int
    at: float
    id: str
    attempt: int


def read_runs(path: Path) -> list[Run]:
    """Every line of the journal, in the order written (an absent file: none yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    runs = []
    for line in text.splitlines():
        entry: dict[str, Any] = json.loads(line)
        runs.append(Run(**entry))
    return runs


def starts(path: Path, prefix: str = "") -> list[Run]:
    """The ``start`` lines whose key begins with ``prefix``."""
    return [r for r in read_runs(path) if r.event == "start" and r.key.startswith(prefix)]


def starts_by_key(path: Path, prefix: str = "") -> dict[str, list[Run]]:
    found: dict[str, list[Run]] = defaultdict(list)
    for run in starts(path, prefix):
        found[run.key].append(run)
    return dict(found)


def most_at_once(runs: list[Run]) -> int:
    """The most runs between their ``start`` and ``end`` at one moment."""
    marks = sorted(((r.at, 1 if r.event == "start" else -1) for r in runs),
                   key=lambda mark: (mark[0], mark[1]))  # at a tie, an end comes first
    level = peak = 0
    for _, step in marks:
        level += step
        peak = max(peak, level)
    return peak


def pids_of(runs: list[Run]) -> Counter[int]:
    return Counter(r.pid for r in runs)
